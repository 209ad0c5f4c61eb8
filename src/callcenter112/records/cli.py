"""The records commands: `incidents list|show|export|hold`, `recordings verify`,
`callbacks list`, `audit verify|list`.

Each command loads the configuration (`--config FILE`), opens the incident
store named by ``[storage] database`` (creating or upgrading it like the
server would) and returns an exit status (DESIGN §4): 0 success, 1 a check
failed or the thing asked for does not exist, 2 bad usage or configuration.

Reading records is itself an auditable act: `incidents list/show/export`,
`callbacks list`, `audit list` and both verifications append an audit entry
whose actor is ``cli:<OS user>`` (the prefix keeps OS accounts apart from web
console accounts of the same name). `incidents hold` puts an incident on legal
hold (or, with `--release`, takes it off): retention then keeps its recordings
whatever their age; the change is audit-logged with its reason.

Progress bars (export, verify) are drawn on stderr only when stderr is a
terminal, so pipes, cron mails and CI logs stay clean; `--progress` forces
them, `--no-progress` suppresses them.

Dates accept ``2026-11-28``, ``2026-11-28T10:00`` and ISO 8601 with ``Z`` or
an offset; times without an offset are UTC. ``--until`` with a bare date
includes that whole day.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

from ..config import Config, ConfigError, load_config
from ..incidents import (
    INCIDENT_CSV_COLUMNS,
    AuditAction,
    Callback,
    Category,
    Disposition,
    Incident,
    IncidentError,
    IncidentQuery,
    IncidentRecord,
    Status,
    audit_entry_to_json,
    callback_to_json,
    format_timestamp,
    incident_csv_row,
    incident_to_json,
    parse_timestamp,
)
from .engines import open_database
from .evidence import VerifyReport, verify_audit, verify_recordings
from .protocol import Store, StoreError
from .retention import apply_retention

__all__ = ["ProgressBar", "add_commands", "cli_actor"]

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
Command = Callable[[Store, Config, argparse.Namespace], Awaitable[int]]


def cli_actor() -> str:
    """The audit actor for a command run from a shell: ``cli:<OS user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


# --------------------------------------------------------------------------- progress


class ProgressBar:
    """A one-line text bar: ``verify [########------------]  40%  4/10``."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO, *, enabled: bool) -> None:
        self.label = label
        self.stream = stream
        self.enabled = enabled
        self._last: tuple[int, int] | None = None
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        pct = 100 if total <= 0 else min(100, done * 100 // total)
        if self._last is not None and self._last[0] == pct and done != total:
            return  # redraw only when the percentage moves
        self._last = (pct, done)
        filled = pct * self.WIDTH // 100
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {pct:3d}%  {done}/{total}")
        self.stream.flush()
        self._drawn = True

    def restart(self, label: str) -> None:
        """End this bar's line and start a new bar under it."""
        self.finish()
        self.label, self._last, self._drawn = label, None, False

    def finish(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _progress_enabled(args: argparse.Namespace) -> bool:
    choice: bool | None = args.progress
    return sys.stderr.isatty() if choice is None else choice


# --------------------------------------------------------------------------- plumbing


def _run(args: argparse.Namespace, command: Command) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2

    async def go() -> int:
        async with open_database(cfg.storage.database, resolve=cfg.path) as store:
            return await command(store, cfg, args)

    try:
        return asyncio.run(go())
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `… | head`
        return 0


def _handler(command: Command) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        return _run(args, command)

    return handler


async def _audit(store: Store, action: str, target: str, detail: dict[str, object]) -> None:
    await store.audit(
        actor=cli_actor(), action=action, target=target, detail=detail, at=time.time()
    )


def _since(text: str) -> float:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _until(text: str) -> float:
    try:
        return parse_timestamp(text, end_of_day=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _output_path(text: str) -> Path:
    return Path(text).resolve()  # the audit entry names the file unambiguously


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=_since, metavar="WHEN", help="arrived at or after WHEN")
    p.add_argument("--until", type=_until, metavar="WHEN", help="arrived before WHEN")
    p.add_argument("--caller", metavar="NUMBER", help="caller number (any spelling)")
    p.add_argument("--category", choices=[c.value for c in Category])
    p.add_argument("--status", choices=[s.value for s in Status])
    p.add_argument("--operator", metavar="USER")
    p.add_argument("--disposition", choices=[d.value for d in Disposition])


def _query(args: argparse.Namespace) -> IncidentQuery:
    return IncidentQuery(
        since=args.since,
        until=args.until,
        caller=args.caller,
        category=None if args.category is None else Category(args.category),
        status=None if args.status is None else Status(args.status),
        operator=args.operator,
        disposition=None if args.disposition is None else Disposition(args.disposition),
    )


def _filters_detail(args: argparse.Namespace) -> dict[str, object]:
    detail: dict[str, object] = {}
    for name in ("caller", "category", "status", "operator", "disposition"):
        value = getattr(args, name, None)
        if value is not None:
            detail[name] = value
    for name in ("since", "until"):
        value = getattr(args, name, None)
        if value is not None:
            detail[name] = format_timestamp(value)
    return detail


def _when(t: float | None) -> str:
    text = format_timestamp(t)
    return "-" if text is None else text[:19].replace("T", " ")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- incidents


def _incident_row(inc: Incident) -> list[str]:
    sla = inc.sla_s
    return [
        inc.id,
        _when(inc.arrived_at),
        inc.caller,
        inc.category.value,
        inc.status.value,
        inc.operator or "-",
        "-" if inc.disposition is None else inc.disposition.value,
        "-" if sla is None else f"{sla:.1f}s",
    ]


async def _incidents_list(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    items = await store.list_incidents(_query(args), limit=args.limit, offset=args.offset)
    await _audit(
        store,
        AuditAction.LIST,
        "incidents",
        {**_filters_detail(args), "limit": args.limit, "offset": args.offset, "count": len(items)},
    )
    if args.json:
        _print_json([incident_to_json(i) for i in items])
        return 0
    if not items:
        print("no incidents")
        return 0
    header = ["ID", "ARRIVED (UTC)", "CALLER", "CATEGORY", "STATUS", "OPERATOR", "DISPOSITION"]
    _table([[*header, "ANSWER"], *(_incident_row(i) for i in items)], sys.stdout)
    return 0


def _show_text(rec: IncidentRecord, out: TextIO) -> None:
    inc = rec.incident
    sla = inc.sla_s
    out.write(f"Incident {inc.id}  [{inc.status.value}]  category {inc.category.value}\n")
    pairs = [
        ("caller", inc.caller + (f" ({inc.caller_name})" if inc.caller_name else "")),
        ("dialled", f"{inc.dialled or '-'} via trunk {inc.trunk or '-'}"),
        ("call id", inc.call_id or "-"),
        ("language", inc.language or "-"),
        ("operator", inc.operator or "-"),
        ("answer time", "-" if sla is None else f"{sla:.3f} s"),
        ("disposition", "-" if inc.disposition is None else inc.disposition.value),
        ("location", inc.location_text or "-"),
        ("kecamatan", inc.kecamatan or "-"),
        ("kelurahan", inc.kelurahan or "-"),
        ("agencies", ", ".join(inc.agencies_notified) or "-"),
        ("legal hold", "yes" if inc.legal_hold else "no"),
        ("description", inc.description or "-"),
    ]
    for label, value in pairs:
        out.write(f"  {label:<12} {value}\n")
    out.write("Timestamps (UTC)\n")
    data = incident_to_json(inc)
    for name in (
        "arrived_at",
        "answered_at",
        "ivr_done_at",
        "queued_at",
        "offered_at",
        "operator_answered_at",
        "transferred_at",
        "ended_at",
        "wrapped_up_at",
    ):
        out.write(f"  {name:<21} {data[name] or '-'}\n")
    out.write(f"Legs ({len(rec.legs)})\n")
    for leg in rec.legs:
        q = leg.quality
        quality = (
            "no stats"
            if q is None
            else f"{q.packets} packets, {q.lost} lost, jitter {q.jitter_ms:.1f} ms"
        )
        out.write(
            f"  #{leg.id} {leg.role.value:<10} {leg.peer or '-'} {leg.codec or '-'}"
            f"  {_when(leg.started_at)} → {_when(leg.ended_at)}"
            f"  {leg.end_reason or 'open'}  ({quality})\n"
        )
    out.write(f"Recordings ({len(rec.recordings)})\n")
    for r in rec.recordings:
        state = r.status.value if r.deleted_at is None else f"deleted {_when(r.deleted_at)}"
        duration = "-" if r.duration_s is None else f"{r.duration_s:.1f} s"
        out.write(
            f"  {r.path}  {state}  {r.channels or '-'} ch  {duration}  {r.codec or '-'}\n"
            f"    sha256 {r.sha256 or '-'}  chain #{r.seq if r.seq is not None else '-'}\n"
        )
    if rec.callbacks:
        out.write(f"Callbacks ({len(rec.callbacks)})\n")
        for cb in rec.callbacks:
            out.write(
                f"  #{cb.id} {cb.number or '(number withheld)'}  {cb.status.value}"
                f"  {cb.reason}  attempts {len(cb.attempts)}"
                + (f"  outcome {cb.outcome}" if cb.outcome else "")
                + "\n"
            )
    out.write(f"Events ({len(rec.events)})\n")
    for e in rec.events:
        detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail, ensure_ascii=False)
        out.write(f"  {format_timestamp(e.at)}  {e.kind:<18} {detail}\n")


async def _incidents_show(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    rec = await store.get_incident(args.id)
    await _audit(store, AuditAction.VIEW, args.id, {"found": rec is not None})
    if rec is None:
        print(f"no incident {args.id}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(incident_to_json(rec))
    else:
        _show_text(rec, sys.stdout)
    return 0


class _HashingWriter(io.TextIOBase):
    """Text sink that also hashes what it writes (the export's digest goes in the audit)."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self.digest = hashlib.sha256()

    def write(self, s: str) -> int:
        self.digest.update(s.encode("utf-8"))
        return self.target.write(s)


async def _incidents_export(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    query = _query(args)
    total = await store.count_incidents(query)
    bar = ProgressBar("export", sys.stderr, enabled=_progress_enabled(args))
    output: Path | None = args.output
    stream: IO[str]
    if output is None:
        stream = sys.stdout
    else:
        try:
            stream = output.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            print(f"error: cannot write {output}: {exc.strerror}", file=sys.stderr)
            return 1
    sink = _HashingWriter(stream)
    count = 0
    try:
        if args.format == "csv":
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(INCIDENT_CSV_COLUMNS)
            async for inc in store.iter_incidents(query):
                writer.writerow(incident_csv_row(inc))
                count += 1
                bar(count, total)
        else:
            sink.write("[")
            async for inc in store.iter_incidents(query):
                rec = await store.get_incident(inc.id)
                if rec is None:  # cannot happen: incidents are never deleted
                    continue
                sink.write(",\n" if count else "\n")
                sink.write(json.dumps(incident_to_json(rec), ensure_ascii=False))
                count += 1
                bar(count, total)
            sink.write("\n]\n")
    finally:
        bar.finish()
        if output is not None:
            stream.close()
        else:
            stream.flush()
    await _audit(
        store,
        AuditAction.EXPORT,
        "incidents",
        {
            **_filters_detail(args),
            "format": args.format,
            "count": count,
            "output": "stdout" if output is None else str(output),
            "sha256": sink.digest.hexdigest(),
        },
    )
    if output is not None:
        print(f"exported {count} incident(s) to {output}", file=sys.stderr)
    return 0


async def _incidents_hold(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    on = not args.release
    try:
        changed = await store.set_legal_hold(
            args.id, on=on, actor=cli_actor(), at=time.time(), reason=args.reason
        )
    except IncidentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = "on legal hold" if on else "not on legal hold"
    print(f"{args.id}: {state}" + ("" if changed else " (unchanged)"))
    return 0


def _reason(text: str) -> str:
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("a legal hold needs a reason (e.g. the court order)")
    return value


# --------------------------------------------------------------------------- integrity


def _report(what: str, report: VerifyReport, out: TextIO) -> None:
    for problem in report.problems:
        out.write(f"PROBLEM {problem}\n")
    files = f", {report.files_checked} file(s) re-hashed" if what == "recordings" else ""
    tombs = f", {report.tombstones} deleted by retention" if report.tombstones else ""
    out.write(
        f"{what}: {report.entries} chain entr{'y' if report.entries == 1 else 'ies'}"
        f"{files}{tombs}; head #{report.head_seq} {report.head_hash}\n"
    )
    if report.ok:
        out.write(f"{what}: OK\n")
    else:
        out.write(f"{what}: FAILED, {len(report.problems)} problem(s)\n")


async def _recordings_verify(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    bar = ProgressBar("verify", sys.stderr, enabled=_progress_enabled(args))
    try:
        report = await verify_recordings(store, cfg.path(cfg.storage.recordings), progress=bar)
    finally:
        bar.finish()
    _report("recordings", report, sys.stdout)
    await _audit(
        store,
        AuditAction.VERIFY,
        "recordings",
        {
            "ok": report.ok,
            "problems": [str(p) for p in report.problems[:100]],
            "entries": report.entries,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
        },
    )
    return 0 if report.ok else 1


async def _recordings_sweep(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    """The retention sweep by hand (issue 11): refuses like the server's, unless
    `--force` for a share beyond recordings.max_delete_share (never for the clock)."""
    report = await apply_retention(
        store,
        cfg.path(cfg.storage.recordings),
        cfg.recordings.keep_days,
        time.time(),
        actor=cli_actor(),
        max_share=cfg.recordings.max_delete_share,
        force=args.force,
    )
    if report.refused:
        print(f"refused: {report.refused}", file=sys.stderr)
        return 1
    print(f"deleted {len(report.deleted)} recording(s)")
    for error in report.errors:
        print(f"could not remove {error}", file=sys.stderr)
    return 1 if report.errors else 0


async def _audit_verify(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    bar = ProgressBar("verify", sys.stderr, enabled=_progress_enabled(args))
    try:
        report = await verify_audit(store, progress=bar)
    finally:
        bar.finish()
    _report("audit log", report, sys.stdout)
    await _audit(
        store,
        AuditAction.VERIFY,
        "audit",
        {
            "ok": report.ok,
            "problems": [str(p) for p in report.problems[:100]],
            "entries": report.entries,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
        },
    )
    return 0 if report.ok else 1


async def _audit_list(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    action: str | None = args.audit_action
    if args.target is None and action is None:
        head = await store.count_audit()
        entries = await store.list_audit(after_seq=max(0, head - args.limit))
    else:
        entries = await store.list_audit(target=args.target, action=action)
    entries = entries[-args.limit :]
    await _audit(
        store,
        AuditAction.LIST,
        "audit",
        {"target": args.target, "action": action, "count": len(entries)},
    )
    if args.json:
        _print_json([audit_entry_to_json(e) for e in entries])
        return 0
    if not entries:
        print("no audit entries")
        return 0
    rows = [["SEQ", "AT (UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL"]]
    for e in entries:
        detail = json.dumps(e.detail, ensure_ascii=False, sort_keys=True)
        rows.append(
            [
                str(e.seq),
                _when(e.at),
                e.actor,
                e.action,
                e.target,
                detail if len(detail) <= 80 else detail[:77] + "...",
            ]
        )
    _table(rows, sys.stdout)
    return 0


# --------------------------------------------------------------------------- callbacks


def _callback_row(cb: Callback) -> list[str]:
    return [
        str(cb.id),
        cb.incident_id,
        cb.number or "(withheld)",
        cb.status.value,
        _when(cb.created_at),
        cb.taken_by or "-",
        str(len(cb.attempts)),
        cb.reason,
        cb.outcome or "-",
    ]


async def _callbacks_list(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    items = await store.list_callbacks(open_only=not args.all)
    await _audit(store, AuditAction.LIST, "callbacks", {"all": bool(args.all), "count": len(items)})
    if args.json:
        _print_json([callback_to_json(c) for c in items])
        return 0
    if not items:
        print("no open callbacks" if not args.all else "no callbacks")
        return 0
    header = ["ID", "INCIDENT", "NUMBER", "STATUS", "CREATED (UTC)", "TAKEN BY", "TRIES"]
    _table([[*header, "REASON", "OUTCOME"], *(_callback_row(c) for c in items)], sys.stdout)
    return 0


# --------------------------------------------------------------------------- registration


def _progress_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="draw a progress bar on stderr even when it is not a terminal",
    )
    group.add_argument("--no-progress", dest="progress", action="store_false")


def _store_migrate(args: argparse.Namespace) -> int:
    from .engines import is_postgresql, sqlite_path
    from .transfer import copy_sqlite_to_postgresql

    source, target = str(args.source), str(args.target)
    if is_postgresql(source) or not is_postgresql(target):
        print("error: --from takes sqlite:PATH, --to a postgresql:// DSN", file=sys.stderr)
        return 2
    bar = ProgressBar("copy", sys.stderr, enabled=_progress_enabled(args))

    def progress(table: str, done: int, total: int) -> None:
        if table != bar.label:
            bar.restart(table)
        bar(done, total)

    try:
        report = asyncio.run(
            copy_sqlite_to_postgresql(
                sqlite_path(source),
                target,
                recordings_dir=args.recordings,
                progress=progress,
            )
        )
    except (StoreError, IncidentError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    bar.finish()
    for table, rows in report.rows.items():
        print(f"{table}: {rows} rows")
    if args.recordings is not None:
        print(f"recording files: {report.files} copied into the database")
        for rel in report.missing_files:
            print(f"missing recording file: {rel}", file=sys.stderr)
        if report.missing_files:
            return 1
    print("done: run `recordings verify` and `audit verify` against the target")
    return 0


def add_commands(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Register the records command groups on the `callcenter112` parser."""
    st = sub.add_parser("store", help="the incident store itself")
    st_sub = st.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = st_sub.add_parser(
        "migrate",
        help="copy a SQLite store into PostgreSQL (re-runnable; same chain heads)",
    )
    p.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH")
    p.add_argument("--to", dest="target", required=True, metavar="postgresql://…")
    p.add_argument(
        "--recordings",
        type=Path,
        metavar="DIR",
        help="the recordings folder: copy each sealed recording into the database too",
    )
    _progress_flags(p)
    p.set_defaults(handler=_store_migrate)

    inc = sub.add_parser("incidents", help="list, show and export incidents")
    inc_sub = inc.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = inc_sub.add_parser("list", parents=[common], help="incidents, newest first")
    _add_filters(p)
    p.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    p.add_argument("--offset", type=int, default=0, help="skip this many newest first")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(handler=_handler(_incidents_list))

    p = inc_sub.add_parser(
        "show", parents=[common], help="one incident: legs, events, recordings, quality stats"
    )
    p.add_argument("id", help="incident id, e.g. 20261128-0042")
    p.add_argument("--json", action="store_true", help="the incident JSON")
    p.set_defaults(handler=_handler(_incidents_show))

    p = inc_sub.add_parser("export", parents=[common], help="export incidents as CSV or JSON")
    _add_filters(p)
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument(
        "--output", type=_output_path, metavar="FILE", help="write here instead of stdout"
    )
    _progress_flags(p)
    p.set_defaults(handler=_handler(_incidents_export))

    p = inc_sub.add_parser(
        "hold",
        parents=[common],
        help="put an incident on legal hold: retention keeps its recordings",
    )
    p.add_argument("id", help="incident id, e.g. 20261128-0042")
    p.add_argument(
        "--reason", required=True, type=_reason, help="why, e.g. the court order's number"
    )
    p.add_argument("--release", action="store_true", help="take the incident off legal hold")
    p.set_defaults(handler=_handler(_incidents_hold))

    rec = sub.add_parser("recordings", help="recording integrity")
    rec_sub = rec.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = rec_sub.add_parser(
        "verify",
        parents=[common],
        help="re-hash every recording and check the hash chain (exit 1 on any problem)",
    )
    _progress_flags(p)
    p.set_defaults(handler=_handler(_recordings_verify))
    p = rec_sub.add_parser(
        "sweep",
        parents=[common],
        help="delete recordings past recordings.keep_days (refused on a wrong clock)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="delete even more than recordings.max_delete_share of the recordings",
    )
    p.set_defaults(handler=_handler(_recordings_sweep))

    cb = sub.add_parser("callbacks", help="the callback list of dropped calls")
    cb_sub = cb.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = cb_sub.add_parser("list", parents=[common], help="open callback tasks, oldest first")
    p.add_argument("--all", action="store_true", help="closed ones too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler(_callbacks_list))

    au = sub.add_parser("audit", help="the hash-chained audit log")
    au_sub = au.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = au_sub.add_parser(
        "verify", parents=[common], help="check the audit chain (exit 1 if broken)"
    )
    _progress_flags(p)
    p.set_defaults(handler=_handler(_audit_verify))
    p = au_sub.add_parser("list", parents=[common], help="latest audit entries")
    p.add_argument("--target", help="only entries about this target (e.g. an incident id)")
    p.add_argument("--action", dest="audit_action", metavar="ACTION", help="only this action")
    p.add_argument("--limit", type=_positive, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_handler(_audit_list))
