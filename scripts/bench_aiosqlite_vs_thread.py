import asyncio, time, sqlite3, aiosqlite, tempfile, os, threading, concurrent.futures
N=2000
async def a_sqlite(path):
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL"); await db.execute("PRAGMA synchronous=FULL")
    await db.execute("create table t(id integer primary key, a text, b real)")
    t=time.perf_counter(); loop_busy=0
    # group commit in batches of 50 ops: each op one awaited execute (one thread hop)
    for batch in range(N//50):
        await db.execute("BEGIN IMMEDIATE")
        for i in range(50):
            await db.execute("insert into t(a,b) values(?,?)", ("x", 1.0))
        await db.execute("COMMIT")
    dt=time.perf_counter()-t; await db.close(); return dt
async def thread_batch(path):
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=FULL")
    conn.execute("create table t(id integer primary key, a text, b real)")
    ex = concurrent.futures.ThreadPoolExecutor(1)
    loop=asyncio.get_running_loop()
    def run_batch():
        conn.execute("BEGIN IMMEDIATE")
        for i in range(50):
            conn.execute("insert into t(a,b) values(?,?)", ("x", 1.0))
        conn.execute("COMMIT")
    t=time.perf_counter()
    for batch in range(N//50):
        await loop.run_in_executor(ex, run_batch)
    dt=time.perf_counter()-t; conn.close(); return dt
async def main():
    d=tempfile.mkdtemp()
    for rep in range(2):
        ca=time.process_time(); a=await a_sqlite(os.path.join(d,f"a{rep}.db")); ca=time.process_time()-ca
        cb=time.process_time(); b=await thread_batch(os.path.join(d,f"b{rep}.db")); cb=time.process_time()-cb
        print(f"aiosqlite per-op await: {N/a:.0f} ops/s wall, cpu {ca*1e6/N:.1f} us/op | one hop per batch: {N/b:.0f} ops/s, cpu {cb*1e6/N:.1f} us/op")
asyncio.run(main())
