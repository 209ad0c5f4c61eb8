"""One chain check: `recordings verify` and the auditor's page judge tampered data alike.

Both call `records.chain.check_recording_entry`; these tests tamper with
recordings and chain rows in every way the walk can name and check that the
per-recording check (used by /audit) finds the same problems, recording by
recording, and that the page shows the first of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from callcenter112.incidents import Recording, RecordingStatus
from callcenter112.records import SqliteStore, verify_recordings
from callcenter112.records.chain import (
    GENESIS_HASH,
    FileSeen,
    ProblemKind,
    check_recording_entry,
    recording_entry_hash,
)
from callcenter112.records.evidence import check_sealed_recording
from callcenter112.web.audit import check_recording
from callcenter112.web.context import WebContext
from store_engines import StoreFactory, raw_for
from test_recordings import T0, _call_with_recording

pytest_plugins = ("pg_support", "store_engines")  # every test runs on both engines


@dataclass
class _AuditorContext:
    """What `web.audit.check_recording` reads from the web context."""

    store: SqliteStore
    recordings_dir: Path


def _path_of(subject: str) -> str:
    return re.sub(r" \(#\d+\)$", "", subject)


async def _every_recording(store: SqliteStore) -> list[Recording]:
    """Every chain entry, as the store returns it (edited ones included)."""
    return await store.recording_chain(after_seq=-100, limit=1000)


async def test_walk_and_page_agree_on_tampered_data(tmp_path: Path, stores: StoreFactory) -> None:
    recdir = tmp_path / "recordings"
    recdir.mkdir()
    async with stores.open() as store:
        paths = [(await _call_with_recording(store, recdir, n))[1] for n in range(9)]
        # A changed file and a missing file.
        paths[0].chmod(0o644)
        paths[0].write_bytes(paths[0].read_bytes()[:-1] + b"\x00")
        paths[1].chmod(0o644)
        paths[1].unlink()
        raw = raw_for(store)
        raw.forget_recording_copies()  # else the database's copy refills the folder
        raw.drop_trigger("recordings_chain_immutable", "recordings")
        raw.drop_trigger("recordings_chain_no_delete", "recordings")
        # An edited entry, a removed entry, two swapped entries, an unaudited tombstone.
        raw.execute("UPDATE recordings SET sealed_at = sealed_at + 1 WHERE seq = 3")
        raw.execute("DELETE FROM recordings WHERE seq = 5")
        raw.execute("UPDATE recordings SET seq = -1 WHERE seq = 7")
        raw.execute("UPDATE recordings SET seq = 7 WHERE seq = 8")
        raw.execute("UPDATE recordings SET seq = 8 WHERE seq = -1")
        raw.execute(
            "UPDATE recordings SET deleted_at = ?, deleted_by = 'mallory' WHERE seq = 9", (T0,)
        )
        raw.close()

        report = await verify_recordings(store, recdir)
        walked: dict[str, set[ProblemKind]] = {}
        for p in report.problems:
            if p.kind is not ProblemKind.UNKNOWN_FILE:
                walked.setdefault(_path_of(p.subject), set()).add(p.kind)

        ctx = cast(WebContext, _AuditorContext(store=store, recordings_dir=recdir))
        paged: dict[str, set[ProblemKind]] = {}
        statuses: dict[str, str] = {}
        for rec in await _every_recording(store):
            found = await check_sealed_recording(store, recdir, rec)
            if found:
                paged[rec.path] = {p.kind for p in found}
            statuses[rec.path] = (await check_recording(ctx, rec)).status

        assert paged == walked
        rel = [p.relative_to(recdir).as_posix() for p in paths]
        assert walked[rel[0]] == {ProblemKind.CHANGED_FILE}
        assert walked[rel[1]] == {ProblemKind.MISSING_FILE}
        assert walked[rel[2]] == {ProblemKind.EDITED_ENTRY}
        assert walked[rel[5]] == {ProblemKind.REMOVED_ENTRY}
        assert ProblemKind.BROKEN_LINK in walked[rel[6]] | walked[rel[7]]
        assert walked[rel[8]] == {ProblemKind.UNAUDITED_DELETION, ProblemKind.BROKEN_LINK}
        assert statuses[rel[0]] == "changed"
        assert statuses[rel[1]] == "missing"
        assert statuses[rel[2]] == "edited_entry"
        assert statuses[rel[3]] == "intact"  # its link to the edited entry still holds
        assert statuses[rel[5]] == "removed_entry"
        assert statuses[rel[8]] == "broken_link"


async def test_a_tombstone_with_its_audit_entry_passes_both(
    tmp_path: Path, stores: StoreFactory
) -> None:
    recdir = tmp_path / "recordings"
    recdir.mkdir()
    async with stores.open() as store:
        _, path = await _call_with_recording(store, recdir, 1)
        [rec] = await _every_recording(store)
        await store.tombstone_recordings([rec.id], actor="retention", at=T0 + 9)
        path.chmod(0o644)
        path.unlink()
        [rec] = await _every_recording(store)
        assert (await verify_recordings(store, recdir)).ok
        assert await check_sealed_recording(store, recdir, rec) == ()
        ctx = cast(WebContext, _AuditorContext(store=store, recordings_dir=recdir))
        assert (await check_recording(ctx, rec)).status == "deleted"


def _sealed(**changes: float | str) -> Recording:
    base = replace(
        Recording(
            id=1,
            incident_id="20261128-0001",
            path="a.wav",
            status=RecordingStatus.SEALED,
            codec="PCMA",
            channels=2,
            started_at=T0,
            sha256="ab" * 32,
            size=10,
            seq=1,
            prev_hash=GENESIS_HASH,
            sealed_at=T0 + 1,
        ),
        **changes,
    )
    entry = recording_entry_hash(
        prev_hash=base.prev_hash or "",
        seq=base.seq or 0,
        incident_id=base.incident_id,
        path=base.path,
        sha256=base.sha256 or "",
        size=base.size or 0,
        sealed_at=base.sealed_at or 0.0,
    )
    return replace(base, entry_hash=entry)


def test_the_pure_rule_names_each_problem() -> None:
    rec = _sealed()
    good = FileSeen(sha256=rec.sha256, size=rec.size)
    assert (
        check_recording_entry(
            rec, prev_seq=0, prev_hash=GENESIS_HASH, deletion_audited=False, file=good
        )
        == ()
    )
    kinds = [
        p.kind
        for p in check_recording_entry(
            rec, prev_seq=0, prev_hash="f" * 64, deletion_audited=False, file=FileSeen(missing=True)
        )
    ]
    assert kinds == [ProblemKind.BROKEN_LINK, ProblemKind.MISSING_FILE]
    tomb = _sealed(deleted_at=T0 + 5, deleted_by="retention")
    assert (
        check_recording_entry(
            tomb,
            prev_seq=0,
            prev_hash=GENESIS_HASH,
            deletion_audited=True,
            file=FileSeen(missing=True),
        )
        == ()
    )
    changed = check_recording_entry(
        rec,
        prev_seq=0,
        prev_hash=GENESIS_HASH,
        deletion_audited=False,
        file=FileSeen(sha256="0" * 64, size=10),
    )
    assert [p.kind for p in changed] == [ProblemKind.CHANGED_FILE]
