"""Saved softphone registrations on both engines (issue 15): two nodes write the
table, so a save upserts and deletes only what the saving node dropped — never
another node's rows, never a row fresher than the one the node wrote."""

from __future__ import annotations

from typing import Any

pytest_plugins = ("pg_support", "store_engines")

T0 = 1_765_000_000.0
HOUR = 3600.0


def _row(user: str, key: str, expires: float) -> tuple[str, str, str, float]:
    return (user, key, f'{{"user": "{user}", "key": "{key}"}}', expires)


async def _saved(store: Any, now: float = T0) -> dict[tuple[str, str], float]:
    return {(u, k): e for u, k, _t, e in await store.load_registrations(now=now)}


async def test_a_save_keeps_the_rows_another_node_wrote(store: Any) -> None:
    await store.save_registrations([_row("op2", "a", T0 + HOUR)], now=T0)  # the leader
    await store.save_registrations([_row("op1", "b", T0 + HOUR)], now=T0)  # a follower
    assert await _saved(store) == {("op2", "a"): T0 + HOUR, ("op1", "b"): T0 + HOUR}
    # The leader refreshes its own binding: an upsert, the follower's row stays.
    await store.save_registrations([_row("op2", "a", T0 + 2 * HOUR)], now=T0 + 10)
    assert await _saved(store, T0 + 10) == {
        ("op2", "a"): T0 + 2 * HOUR,
        ("op1", "b"): T0 + HOUR,
    }


async def test_gone_deletes_the_nodes_own_row_but_not_a_fresher_one(store: Any) -> None:
    await store.save_registrations(
        [_row("op1", "x", T0 + HOUR), _row("op2", "y", T0 + HOUR)], now=T0
    )
    # Another node took op2's phone re-registering: its row is fresher now.
    await store.save_registrations([_row("op2", "y", T0 + HOUR + 600)], now=T0 + 5)
    # The first node drops both bindings it wrote (op1 unregistered, op2 expired
    # on it): op1's row goes, op2's fresher row stays.
    await store.save_registrations(
        [],
        gone=[("op1", "x", T0 + HOUR + 0.000_3), ("op2", "y", T0 + HOUR)],
        now=T0 + 6,
    )
    assert await _saved(store, T0 + 6) == {("op2", "y"): T0 + HOUR + 600}


async def test_expired_rows_are_dropped_at_the_next_save(store: Any, stores: Any) -> None:
    await store.save_registrations([_row("op1", "x", T0 + 60), _row("op2", "y", T0 + HOUR)], now=T0)
    await store.save_registrations([], now=T0 + 61)
    raw = stores.raw()
    left = raw.execute("SELECT operator FROM registrations ORDER BY operator")
    assert left == [("op2",)]
    assert await _saved(store, T0 + 61) == {("op2", "y"): T0 + HOUR}
