"""The auditor's pages (`/audit`): find incidents, read one, replay and verify its recordings.

* Search by time range (the centre's local time), caller number, category,
  operator, disposition and status; newest first, 50 a page.
* The incident page draws the call as a bar (`timeline`), lists its timeline
  events, legs with RTP quality, disposition, callbacks, and for each
  recording the waveform picture, a player and the integrity status: the file
  is re-hashed and compared with its hash-chain entry, the entry's own hash
  is recomputed and its link to the previous entry checked (the whole chain
  is `callcenter112 recordings verify`).
* Playback decodes G.711 to 16-bit PCM WAV on the fly with byte ranges
  (`audio`). Every playback is audit-logged as `replay` — once per session
  and recording per `REPLAY_AUDIT_WINDOW_S`, so the player's seeks (each a
  new range request) do not flood the log — and every download of the
  original file as `download`. If the audit entry cannot be written the
  audio is not served. The incident page lists who replayed and downloaded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from ..config import DISPOSITIONS
from ..incidents import (
    Category,
    Disposition,
    IncidentQuery,
    IncidentRecord,
    Recording,
    RecordingStatus,
    Status,
)
from ..media.recorder import WavError
from ..numerals import is_ascii_digits
from ..records.chain import ProblemKind
from ..records.evidence import check_sealed_recording, restore_recording_file
from .audio import (
    PcmPlan,
    RangeNotSatisfiable,
    parse_range,
    pcm_plan,
    read_output,
    read_waveform,
    waveform_svg,
)
from .bodies import WebError
from .console import DISPOSITION_LABELS, category_labels
from .context import Call, WebContext, guarded
from .timeline import PHASES, timeline_segments, timeline_svg, timeline_ticks

__all__ = [
    "PAGE_SIZE",
    "REPLAY_AUDIT_WINDOW_S",
    "Integrity",
    "check_recording",
    "parse_local_time",
    "routes",
]

PAGE_SIZE = 50
# One `replay` audit entry per session and recording within this window.
REPLAY_AUDIT_WINDOW_S = 15 * 60.0
_CHUNK = 64 * 1024  # output bytes per read while streaming audio
_WAVEFORM_COLUMNS = 1000
_EVIDENCE_ACTIONS = frozenset({"replay", "download"})
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Integrity:
    status: str  # intact|changed|missing|unreadable|edited_entry|broken_link|deleted|open|lost
    ok: bool
    label_id: str
    label_en: str
    detail: str


def _integrity(status: str, ok: bool, label_id: str, label_en: str, detail: str) -> Integrity:
    return Integrity(status=status, ok=ok, label_id=label_id, label_en=label_en, detail=detail)


def recording_path(ctx: WebContext, rec: Recording) -> Path:
    """The file of a recording, refusing anything outside the recordings directory."""
    root = ctx.recordings_dir.resolve()
    path = (root / rec.path).resolve()
    if not path.is_relative_to(root):
        raise WebError(404, "recording path lies outside the recordings directory")
    return path


# How each problem of `records.chain` reads on the page (status, Indonesian, English).
_PROBLEM_LABELS: dict[ProblemKind, tuple[str, str, str]] = {
    ProblemKind.EDITED_ENTRY: ("edited_entry", "Entri rantai diubah", "Chain entry edited"),
    ProblemKind.REMOVED_ENTRY: ("removed_entry", "Entri rantai dihapus", "Chain entry removed"),
    ProblemKind.BROKEN_LINK: ("broken_link", "Rantai terputus", "Chain link broken"),
    ProblemKind.UNAUDITED_DELETION: (
        "unaudited_deletion",
        "Dihapus tanpa catatan audit",
        "Deleted without audit entry",
    ),
    ProblemKind.MISSING_FILE: ("missing", "File hilang", "File missing"),
    ProblemKind.UNREADABLE_FILE: ("unreadable", "Tidak terbaca", "Unreadable"),
    ProblemKind.CHANGED_FILE: ("changed", "File berubah", "File changed"),
    ProblemKind.UNKNOWN_FILE: ("unknown_file", "File tak dikenal", "File unknown to the chain"),
}


async def check_recording(ctx: WebContext, rec: Recording) -> Integrity:
    """The chain check of one recording (`records.evidence.check_sealed_recording`), labelled.

    The same rules as `callcenter112 recordings verify`: the first problem found is shown.
    """
    if rec.status is RecordingStatus.OPEN:
        return _integrity("open", False, "Sedang direkam", "Still recording", "not sealed yet")
    if rec.status is RecordingStatus.LOST:
        return _integrity("lost", False, "Hilang", "Lost", "the file never appeared")
    recording_path(ctx, rec)  # refuses a path outside the recordings directory
    problems = await check_sealed_recording(ctx.store, ctx.recordings_dir, rec)
    if problems:
        first = problems[0]
        status, label_id, label_en = _PROBLEM_LABELS[first.kind]
        return _integrity(status, False, label_id, label_en, first.detail)
    if rec.deleted_at is not None:
        return _integrity(
            "deleted",
            True,
            "Dihapus (retensi)",
            "Deleted by retention",
            f"by {rec.deleted_by}; the chain entry remains",
        )
    return _integrity(
        "intact", True, "Utuh", "Intact", f"sha256 {rec.sha256} matches chain entry #{rec.seq}"
    )


def parse_local_time(text: str, ctx: WebContext, *, end_of_day: bool = False) -> float:
    """``2026-11-28`` or ``2026-11-28T10:00`` in the centre's time zone → epoch seconds."""
    if not _LOCAL.match(text):
        raise ValueError(f"{text!r} is not a date (2026-11-28) or date and time (2026-11-28T10:00)")
    day_only = len(text) == 10
    dt = datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=ctx.zone)
    t = dt.timestamp()
    if day_only and end_of_day:
        t += 86_400
    return t


def _query(call: Call) -> tuple[IncidentQuery, int, dict[str, str], list[str]]:
    params = call.request.query_params
    form = {
        k: params.get(k, "").strip()[:100]
        for k in (
            "since",
            "until",
            "caller",
            "category",
            "operator",
            "disposition",
            "status",
            "page",
        )
    }
    problems: list[str] = []
    since = until = None
    try:
        if form["since"]:
            since = parse_local_time(form["since"], call.ctx)
        if form["until"]:
            until = parse_local_time(form["until"], call.ctx, end_of_day=True)
    except ValueError as exc:
        problems.append(str(exc))
    category = form["category"] or None
    known = call.ctx.config.category_ids
    if category is not None and category not in known:
        problems.append(f"category {category!r} is not one of {', '.join(known)}")
        category = None
    disposition = form["disposition"] or None
    if disposition is not None and disposition not in DISPOSITIONS:
        problems.append(f"disposition {disposition!r} is not one of {', '.join(DISPOSITIONS)}")
        disposition = None
    status = form["status"] or None
    if status is not None and status not in {s.value for s in Status}:
        problems.append(f"status {status!r} is not one of {', '.join(s.value for s in Status)}")
        status = None
    page = 1
    if form["page"]:
        if not is_ascii_digits(form["page"]) or not 1 <= int(form["page"]) <= 100_000:
            problems.append("page must be a number from 1")
        else:
            page = int(form["page"])
    query = IncidentQuery(
        since=since,
        until=until,
        caller=form["caller"] or None,
        category=None if category is None else Category(category),
        status=None if status is None else Status(status),
        operator=form["operator"] or None,
        disposition=None if disposition is None else Disposition(disposition),
    )
    return query, page, form, problems


@guarded("auditor")
async def search_page(call: Call) -> Response:
    query, page, form, problems = _query(call)
    rows = []
    total = 0
    if not problems:
        total = await call.ctx.store.count_incidents(query)
        rows = await call.ctx.store.list_incidents(
            query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
    pages = max(1, -(-total // PAGE_SIZE))
    base = urlencode({k: v for k, v in form.items() if v and k != "page"})
    return call.page(
        "audit_search.html",
        status=400 if problems else 200,
        form=form,
        problems=problems,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        base_query=base,
        categories=category_labels(call.ctx.config),
        dispositions=DISPOSITION_LABELS,
        statuses=[s.value for s in Status],
        operators=[o.user for o in call.ctx.config.operator],
    )


async def _record(call: Call) -> IncidentRecord:
    incident_id = call.param("incident_id")
    record = await call.ctx.store.get_incident(incident_id)
    if record is None:
        raise WebError(404, f"no incident {incident_id!r}")
    return record


@guarded("auditor")
async def incident_page(call: Call) -> Response:
    record = await _record(call)
    now = call.now()
    inc = record.incident
    segments = timeline_segments(inc, now=now)
    ticks = timeline_ticks(inc, record.events, now=now)
    checks = [await check_recording(call.ctx, rec) for rec in record.recordings]
    trail = await call.ctx.store.list_audit(target=inc.id)
    return call.page(
        "audit_incident.html",
        record=record,
        incident=inc,
        timeline=Markup(timeline_svg(segments, ticks)),
        segments=segments,
        phases=PHASES,
        recordings=list(zip(record.recordings, checks, strict=True)),
        replays=[e for e in trail if e.action in _EVIDENCE_ACTIONS],
        trail=[e for e in trail if e.action not in _EVIDENCE_ACTIONS],
        categories=category_labels(call.ctx.config),
        dispositions=DISPOSITION_LABELS,
    )


async def _playable(call: Call) -> tuple[IncidentRecord, Recording, Path]:
    record = await _record(call)
    text = call.param("recording_id")
    rec = next((r for r in record.recordings if str(r.id) == text), None)
    if rec is None:
        raise WebError(404, f"incident {record.incident.id} has no recording {text!r}")
    if rec.status is not RecordingStatus.SEALED:
        raise WebError(409, f"recording {rec.id} is {rec.status.value}, not sealed")
    if rec.deleted_at is not None:
        raise WebError(410, f"recording {rec.id} was deleted by retention")
    path = recording_path(call.ctx, rec)
    # The recordings folder is a cache of the database's copy where the store keeps one.
    if not await restore_recording_file(call.ctx.store, call.ctx.recordings_dir, rec):
        raise WebError(404, f"recording file {rec.path} is missing")
    return record, rec, path


async def _audit_replay(call: Call, rec: Recording, *, span: str) -> None:
    key = f"{rec.incident_id}/{rec.id}"
    now = call.now()
    session = call.session
    if session is not None:
        last = session.replays.get(key)
        if last is not None and now - last < REPLAY_AUDIT_WINDOW_S:
            return
    await call.ctx.audit(
        call.who, "replay", rec.incident_id, {"recording": rec.id, "path": rec.path, "range": span}
    )
    if session is not None:
        session.replays[key] = now


async def _stream(path: Path, plan: PcmPlan, start: int, end: int) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        pos = start
        while pos <= end:
            last = min(end, pos + _CHUNK - 1)
            chunk = await asyncio.to_thread(read_output, plan, f, pos, last)
            yield chunk
            pos = last + 1
    finally:
        await asyncio.to_thread(f.close)


@guarded("auditor")
async def recording_audio(call: Call) -> Response:
    """The recording as 16-bit PCM WAV for the browser's player, with byte ranges."""
    _, rec, path = await _playable(call)
    try:
        plan = await asyncio.to_thread(pcm_plan, path)
    except WavError as exc:
        raise WebError(422, f"recording cannot be played: {exc}") from None
    total = plan.total
    try:
        wanted = parse_range(call.request.headers.get("range"), total)
    except RangeNotSatisfiable:
        raise WebError(
            416,
            f"range not satisfiable; the audio is {total} bytes",
            headers={"Content-Range": f"bytes */{total}"},
        ) from None
    start, end = (wanted.start, wanted.end) if wanted else (0, total - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start + 1),
        "Cache-Control": "no-store",
        "ETag": f'"{(rec.sha256 or "")[:32]}-pcm16"',
        "Content-Disposition": f'inline; filename="{rec.incident_id}-{rec.id}.wav"',
    }
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
    if call.request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="audio/wav")
    await _audit_replay(call, rec, span=f"{start}-{end}")
    return StreamingResponse(
        _stream(path, plan, start, end), status_code=status, headers=headers, media_type="audio/wav"
    )


@guarded("auditor")
async def recording_download(call: Call) -> Response:
    """The original G.711 file, bit for bit; every download is audit-logged."""
    _, rec, path = await _playable(call)
    await call.ctx.audit(
        call.who, "download", rec.incident_id, {"recording": rec.id, "path": rec.path}
    )
    return FileResponse(
        path,
        media_type="audio/wav",
        filename=f"{rec.incident_id}-{rec.id}-original.wav",
        headers={"Cache-Control": "no-store"},
    )


@guarded("auditor")
async def recording_waveform(call: Call) -> Response:
    _, rec, path = await _playable(call)
    key = f"{rec.path}:{rec.sha256}"
    svg = call.ctx.waveforms.get(key)
    if svg is None:
        try:
            wave = await asyncio.to_thread(read_waveform, path, columns=_WAVEFORM_COLUMNS)
        except WavError as exc:
            raise WebError(422, f"recording cannot be drawn: {exc}") from None
        svg = waveform_svg(wave)
        call.ctx.cache_waveform(key, svg)
    return Response(
        svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"}
    )


def routes() -> list[Route]:
    base = "/audit/incidents/{incident_id}/recordings/{recording_id}"
    return [
        Route("/audit", search_page, methods=["GET"]),
        Route("/audit/incidents/{incident_id}", incident_page, methods=["GET"]),
        Route(f"{base}/audio.wav", recording_audio, methods=["GET", "HEAD"]),
        Route(f"{base}/download", recording_download, methods=["GET"]),
        Route(f"{base}/waveform.svg", recording_waveform, methods=["GET"]),
    ]
