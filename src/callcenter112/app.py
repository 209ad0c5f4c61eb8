"""Composition root: build the centre from the configuration and run it.

Start-up order matters for an emergency service: prompts are loaded first
(a missing prompt is a start-up error, never silence at call time), then
the store is opened and crash recovery runs — incidents left `active` by a
crash become `interrupted`, their partial recordings are repaired and sealed
and their callers get callback tasks — before the first new call can be
accepted. Then RTP sockets, the media clock, SIP and the web console start,
all in one `asyncio.TaskGroup` on one event loop (uvloop when installed).
SIGINT/SIGTERM end every call cleanly (BYE, recording sealed, incident
closed) and stop the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

from .callflow.handoff import Handoff
from .centre import Centre
from .config import Config
from .faults import start_step
from .live_config import LiveWiring
from .logs import configure_logging, get_logger
from .media.prompts import PromptError, PromptLibrary
from .media.recorder import repair_wav
from .net.loop import run
from .net.media import MediaEngine
from .net.rtp_transport import RtpSocketPool
from .records import Store, apply_retention, new_store, recover_after_crash

__all__ = ["run_server", "serve"]

log = get_logger("app")


def serve(config: Config, *, config_path: str = "") -> int:
    """Run the server until SIGINT/SIGTERM; the process exit status."""
    configure_logging()
    _raise_file_limit(config)
    try:
        return run(run_server(config, config_path=config_path))
    except KeyboardInterrupt:
        return 130


async def run_server(
    config: Config,
    *,
    config_path: str = "",
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
) -> int:
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    prompts_dir = config.path(config.ivr.prompts)
    try:
        prompts = PromptLibrary.load(prompts_dir)
    except PromptError as exc:
        log.critical("prompts_unusable", directory=str(prompts_dir), error=str(exc))
        print(f"callcenter112: prompts: {exc}", file=sys.stderr)
        return 2

    recordings_dir = config.path(config.storage.recordings)
    recordings_dir.mkdir(parents=True, exist_ok=True)
    tz_offset = _utc_offset(config.centre.timezone)
    # [storage] database: a SQLite file (the default) or a postgresql:// DSN.
    store = new_store(config.storage.database, resolve=config.path, id_utc_offset_s=tz_offset)
    await store.open()
    try:
        # Issue 11: a disk error here must not stop the centre (faults.start_step).
        # Issue 15: in a cluster the new leader's takeover does this (cluster/glue.py).
        report = (
            None
            if config.cluster.enabled
            else await start_step(
                "crash_recovery",
                lambda: recover_after_crash(store, recordings_dir, time.time(), repair=repair_wav),
            )
        )
        if report is not None and (not report.clean or report.problems):
            log.warning(
                "crash_recovery",
                interrupted=len(report.interrupted),
                incidents=list(report.interrupted[:20]),
                callbacks=len(report.callbacks),
                recordings_sealed=len(report.sealed),
                recordings_lost=len(report.lost),
                problems=list(report.problems[:20]),
                operators_offline=list(report.operators_offline),
            )
        await start_step("config_audit", lambda: _audit_configuration(store, config_path))
        pool = RtpSocketPool(
            _rtp_bind_host(config), config.rtp.port_range, preopen=config.rtp.preopen
        )
        await pool.start()
        try:
            return await _run(
                config, store, prompts, pool, stop, install_signals, loop, config_path
            )
        finally:
            await pool.close()
    finally:
        await store.close()


async def _audit_configuration(store: Store, config_path: str) -> None:
    """Every start names the configuration it runs with (SHA-256 of the file);
    a file that differs from the last start's is a `config_reload` in the audit
    log, so auditors can tell when trunks, operators or the IVR changed."""
    if not config_path:
        return
    try:
        resolved, digest = await asyncio.to_thread(_file_digest, config_path)
    except OSError:
        return
    previous = await store.list_audit(action="config_load")
    last = str(previous[-1].detail.get("sha256")) if previous else None
    detail = {"path": resolved, "sha256": digest, "previous": last}
    now = time.time()
    await store.audit(actor="system", action="config_load", target="config", detail=detail, at=now)
    if last is not None and last != digest:
        await store.audit(
            actor="system", action="config_reload", target="config", detail=detail, at=now
        )
        log.info("configuration_changed", sha256=digest, previous=last)


def _file_digest(path: str) -> tuple[str, str]:
    import hashlib
    from pathlib import Path

    p = Path(path)
    return str(p.resolve()), hashlib.sha256(p.read_bytes()).hexdigest()


def _raise_file_limit(config: Config) -> None:
    """Every bridged call holds two RTP/RTCP socket pairs (four descriptors);
    Debian's default soft limit of 1024 would cap a centre at ~250 calls with
    EMFILE at the worst moment. Raise the soft limit to the hard one and say
    so if that is still short of `sip.max_calls`."""
    import resource

    needed = config.sip.max_calls * 4 + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "file_limit_low",
            limit=soft,
            needed_for_max_calls=needed,
            hint="raise LimitNOFILE / ulimit -n, or lower sip.max_calls",
        )


def _rtp_bind_host(config: Config) -> str:
    return config.sip.listen.host


def _utc_offset(tz: str) -> float:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    offset = datetime.now(ZoneInfo(tz)).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


async def _run(  # noqa: PLR0917 - private, called once
    config: Config,
    store: Store,
    prompts: PromptLibrary,
    pool: RtpSocketPool,
    stop: asyncio.Event,
    install_signals: bool,
    loop: asyncio.AbstractEventLoop,
    config_path: str = "",
) -> int:
    status = 0
    async with asyncio.TaskGroup() as tg:

        def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
            return tg.create_task(coro)

        media = MediaEngine(pool, cname_host=config.sip.advertise)
        media.start()
        centre = Centre(config, store=store, prompts=prompts, media=media, spawn=spawn)
        centre.handoff = Handoff(centre)
        node = _cluster_node(config, centre, spawn)  # issue 15: leader or follower
        try:
            await centre.start()
        except OSError as exc:
            log.critical("sip_bind_failed", listen=str(config.sip.listen), error=str(exc))
            print(f"callcenter112: cannot listen on {config.sip.listen}: {exc}", file=sys.stderr)
            media.stop()
            return 2
        if node is not None:  # issue 15
            tg.create_task(node.run())
        housekeeping_stop = asyncio.Event()
        tg.create_task(media.run_housekeeping(housekeeping_stop))
        tg.create_task(pool.run_replenisher(housekeeping_stop))
        tg.create_task(_retention_loop(config, store, centre.recordings_dir, stop))
        # Issue 16: live configuration, `reload` over the control socket, SIGHUP.
        wiring = LiveWiring(centre, store, config_path=config_path)
        await wiring.start(install_signals=install_signals)
        web_task = await _start_web(config, store, centre, tg, wiring)
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            if node is not None:  # issue 15: SIGUSR1 = planned switch-over (drain)
                _drain_on_signal(loop, node, centre, spawn)
        log.info(
            "ready",
            sip=f"{config.sip.listen.host}:{centre.endpoint.port}",
            web=str(config.web.listen) if config.web.enabled else None,
            rtp=config.rtp.ports,
        )
        await stop.wait()
        log.info("stopping", active_calls=len(centre.active))
        if node is not None:  # issue 15: the lock goes with the session
            node.stop()
        await centre.stop()
        await wiring.close()  # issue 16: after the last BYEs, so the capture keeps them
        if web_task is not None:
            web_task.cancel()
        housekeeping_stop.set()
        media.stop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    log.info("stopped")
    return status


def _drain_on_signal(
    loop: asyncio.AbstractEventLoop, node: Any, centre: Centre, spawn: Any
) -> None:
    async def drain() -> None:
        await node.drain(lambda: len(centre.active))

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, lambda: spawn(drain()))


def _cluster_node(config: Config, centre: Centre, spawn: Any) -> Any:
    """Issue 15: leadership, takeover and drain (cluster/glue.py); None on one node.
    Chunked recordings (issue 14) ship whenever the store keeps copies."""
    if centre.store.keeps_recording_copies:
        from .callflow.failover import ChunkShipping

        centre.media.chunk_shipping = ChunkShipping(centre.store, spawn=spawn)
    if not config.cluster.enabled:
        return None
    from .cluster.glue import ClusterNode, leader_settings

    node = ClusterNode(
        leader_settings(config),
        store=centre.store,
        recordings_dir=centre.recordings_dir,
        publish=centre.publish,
        own=lambda: {c.incident_id for c in centre.active if c.incident_id is not None},
        reload_registrations=centre._restore_registrations,
        spawn=spawn,
        clock=centre.loop.time,
    )
    centre.cluster = node
    centre.role = node.role
    return node


async def _start_web(
    config: Config, store: Store, centre: Any, tg: asyncio.TaskGroup, wiring: LiveWiring
) -> asyncio.Task[None] | None:
    if not config.web.enabled:
        return None
    try:
        from .web import create_app, serve_web
        from .web.telecom_admin import WebConfigFollower
    except ImportError:
        log.warning("web_console_missing")
        return None
    try:
        app = create_app(
            config=config,
            store=store,
            live=centre,
            recordings_dir=centre.recordings_dir,
            telecom_services=wiring.services,  # issue 16
        )
        wiring.live.listen(WebConfigFollower(app.state.web))  # issue 16: web accounts follow
    except Exception as exc:  # noqa: BLE001 - calls must flow even without the console
        log.critical("web_console_unusable", error=str(exc))
        print(f"callcenter112: web console disabled: {exc}", file=sys.stderr)
        return None
    started = asyncio.Event()

    async def run() -> None:
        try:
            await serve_web(app, config.web.listen.host, config.web.listen.port, started=started)
        except (OSError, SystemExit) as exc:
            log.critical("web_failed", listen=str(config.web.listen), error=str(exc))
        finally:
            started.set()

    task = tg.create_task(run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(started.wait(), 10)
    return task


async def _retention_loop(
    config: Config, store: Store, recordings_dir: Any, stop: asyncio.Event
) -> None:
    every = config.recordings.sweep_every_s
    while not stop.is_set():
        try:
            report = await apply_retention(
                store,
                recordings_dir,
                config.recordings.keep_days,
                time.time(),
                max_share=config.recordings.max_delete_share,  # issue 11: refuses, never --force
            )
            if report.refused:
                log.error("retention_refused", reason=report.refused)
            if getattr(report, "deleted", None):
                log.info("retention", report=str(report))
        except Exception as exc:  # noqa: BLE001 - retention must never stop the centre
            log.error("retention_failed", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
