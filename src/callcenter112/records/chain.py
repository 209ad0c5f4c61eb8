"""The hash-chain rules of the evidence, in one place (pure: no IO, no clock).

Sealed recordings and the audit log are hash chains:

    entry_hash = sha256(prev_entry_hash + canonical_json({seq, incident_id, path,
                                                          sha256, size, sealed_at}))

and the audit log the same over ``{seq, at, actor, action, target, detail}``.
The canonical forms are part of the file format: the stores (SQLite and
PostgreSQL) compute them inside their write transaction, and every checker —
`callcenter112 recordings verify`, `audit verify` and the auditor's page —
recomputes them here from what the store returns, so a row edited behind the
product's back (even with the database's triggers dropped) no longer matches.

`check_recording_entry` is the whole judgement on one sealed recording given
what was observed about its neighbour, its tombstone's audit entry and its
file: the chain walk calls it for every entry, the auditor's page for the one
it shows, so the two cannot drift.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from ..incidents import AuditEntry, Recording, canonical_json, format_timestamp_us

__all__ = [
    "GENESIS_HASH",
    "FileSeen",
    "IntegrityProblem",
    "ProblemKind",
    "audit_entry_hash",
    "check_audit_entry",
    "check_link",
    "check_recording_entry",
    "recording_entry_hash",
]

GENESIS_HASH = "0" * 64  # prev_hash of the first entry of a chain


def recording_entry_hash(
    *,
    prev_hash: str,
    seq: int,
    incident_id: str,
    path: str,
    sha256: str,
    size: int,
    sealed_at: float,
) -> str:
    """The hash of one recordings-chain entry (its canonical form is part of the file format)."""
    body = canonical_json(
        {
            "seq": seq,
            "incident_id": incident_id,
            "path": path,
            "sha256": sha256,
            "size": size,
            "sealed_at": format_timestamp_us(sealed_at),
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def audit_entry_hash(
    *,
    prev_hash: str,
    seq: int,
    at: float,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, object],
) -> str:
    """The hash of one audit-log entry."""
    body = canonical_json(
        {
            "seq": seq,
            "at": format_timestamp_us(at),
            "actor": actor,
            "action": action,
            "target": target,
            "detail": detail,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


class ProblemKind(StrEnum):
    CHANGED_FILE = "changed_file"  # file hash or size differs from its chain entry
    MISSING_FILE = "missing_file"  # file gone and its entry is not a tombstone
    UNREADABLE_FILE = "unreadable_file"
    EDITED_ENTRY = "edited_entry"  # the entry's own hash no longer matches its fields
    REMOVED_ENTRY = "removed_entry"  # a gap in seq: entries deleted
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous entry's hash: reordered/spliced
    UNKNOWN_FILE = "unknown_file"  # file on disk the chain does not know
    UNAUDITED_DELETION = "unaudited_deletion"  # tombstone without a retention_delete audit entry


_LABELS = {
    ProblemKind.CHANGED_FILE: "changed file",
    ProblemKind.MISSING_FILE: "missing file",
    ProblemKind.UNREADABLE_FILE: "unreadable file",
    ProblemKind.EDITED_ENTRY: "chain entry edited",
    ProblemKind.REMOVED_ENTRY: "chain entry removed",
    ProblemKind.BROKEN_LINK: "chain entries reordered or spliced",
    ProblemKind.UNKNOWN_FILE: "file unknown to the chain",
    ProblemKind.UNAUDITED_DELETION: "deletion without audit entry",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrityProblem:
    kind: ProblemKind
    subject: str  # a recording path or "audit #seq" / "recording chain #seq"
    detail: str

    def __str__(self) -> str:
        return f"{_LABELS[self.kind]}: {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSeen:
    """What a checker found when it looked for a recording's bytes.

    Exactly one of: `missing`, `error` (could not be read), or `sha256` and
    `size` of the bytes read.
    """

    missing: bool = False
    error: str | None = None
    sha256: str | None = None
    size: int | None = None


def check_link(
    subject: str,
    *,
    seq: int,
    prev_seq: int,
    prev_hash_stored: str,
    prev_hash_expected: str,
) -> IntegrityProblem | None:
    """Does entry `seq` follow the entry (`prev_seq`, `prev_hash_expected`) before it?"""
    if seq > prev_seq + 1:
        missing = f"#{prev_seq + 1}" if seq == prev_seq + 2 else f"#{prev_seq + 1}..#{seq - 1}"
        return IntegrityProblem(
            kind=ProblemKind.REMOVED_ENTRY,
            subject=subject,
            detail=f"entries {missing} are missing before #{seq}",
        )
    if seq <= prev_seq:
        return IntegrityProblem(
            kind=ProblemKind.BROKEN_LINK, subject=subject, detail=f"#{seq} comes after #{prev_seq}"
        )
    if prev_hash_stored != prev_hash_expected:
        return IntegrityProblem(
            kind=ProblemKind.BROKEN_LINK,
            subject=subject,
            detail=f"prev_hash {prev_hash_stored[:16]}… is not the hash of entry #{prev_seq}",
        )
    return None


def check_recording_entry(
    rec: Recording,
    *,
    prev_seq: int,
    prev_hash: str,
    deletion_audited: bool,
    file: FileSeen,
) -> tuple[IntegrityProblem, ...]:
    """Every problem of one sealed recording's chain entry, in a fixed order.

    `prev_seq`/`prev_hash` are the entry before it in the chain (0 and
    `GENESIS_HASH` for the first); `deletion_audited` whether a
    `retention_delete` audit entry names this entry's seq; `file` what was
    found on disk (or in the store's copy) for it. A tombstone's missing file
    is no problem; a file still present is checked like any other.
    """
    if rec.seq is None:
        raise ValueError(f"recording {rec.id} is not sealed: it has no chain entry")
    problems: list[IntegrityProblem] = []
    subject = rec.path
    link = check_link(
        f"{subject} (#{rec.seq})",
        seq=rec.seq,
        prev_seq=prev_seq,
        prev_hash_stored=rec.prev_hash or "",
        prev_hash_expected=prev_hash,
    )
    if link is not None:
        problems.append(link)
    expected = recording_entry_hash(
        prev_hash=rec.prev_hash or "",
        seq=rec.seq,
        incident_id=rec.incident_id,
        path=rec.path,
        sha256=rec.sha256 or "",
        size=rec.size or 0,
        sealed_at=rec.sealed_at or 0.0,
    )
    if expected != rec.entry_hash:
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.EDITED_ENTRY,
                subject=f"{subject} (#{rec.seq})",
                detail="the entry's fields no longer match its hash",
            )
        )
    if rec.deleted_at is not None and not deletion_audited:
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.UNAUDITED_DELETION,
                subject=subject,
                detail=f"tombstone by {rec.deleted_by} has no retention_delete entry",
            )
        )
    if file.missing:
        if rec.deleted_at is None:
            problems.append(
                IntegrityProblem(
                    kind=ProblemKind.MISSING_FILE,
                    subject=subject,
                    detail=f"sealed as {rec.sha256}, not on disk",
                )
            )
    elif file.error is not None:
        problems.append(
            IntegrityProblem(kind=ProblemKind.UNREADABLE_FILE, subject=subject, detail=file.error)
        )
    elif file.sha256 != rec.sha256 or file.size != rec.size:
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.CHANGED_FILE,
                subject=subject,
                detail=f"sha256 {file.sha256} ({file.size} bytes), sealed as "
                f"{rec.sha256} ({rec.size} bytes)",
            )
        )
    return tuple(problems)


def check_audit_entry(
    entry: AuditEntry, *, prev_seq: int, prev_hash: str
) -> tuple[IntegrityProblem, ...]:
    """Every problem of one audit-log entry given the entry before it (0/GENESIS_HASH first)."""
    subject = f"audit #{entry.seq} ({entry.action} {entry.target} by {entry.actor})"
    problems: list[IntegrityProblem] = []
    link = check_link(
        subject,
        seq=entry.seq,
        prev_seq=prev_seq,
        prev_hash_stored=entry.prev_hash,
        prev_hash_expected=prev_hash,
    )
    if link is not None:
        problems.append(link)
    expected = audit_entry_hash(
        prev_hash=entry.prev_hash,
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        detail=entry.detail,
    )
    if expected != entry.entry_hash:
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.EDITED_ENTRY,
                subject=subject,
                detail="the entry's fields no longer match its hash",
            )
        )
    return tuple(problems)
