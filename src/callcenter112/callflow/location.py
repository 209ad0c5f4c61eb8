"""Where the caller is, in the running call (issue 13): the INVITE's PIDF-LO to the incident.

The pure parts live in `location` (PIDF-LO, headers, AML, the `Fix` record)
and `net.geoloc_fetch` (by-reference dereference). This module is what the
call flow calls:

- `read_location(invite, now=)` on arrival: the SDP offer out of a
  multipart body (None: we offer ourselves; never a 415) and the
  `LocationReport`;
- `CallLocation.attach(...)` once the incident exists: AML fixes that beat
  the call are claimed, the INVITE's fixes kept, its notes, Call-Info and
  RFC 7852 blocks written as timeline events, and every ``https:`` reference
  fetched off the call path;
- `agency_location(...)` for the INVITE that hands the call to an agency:
  the caller's best fix as a PIDF-LO by value beside the SDP.

Every fix goes through one `StoreLocationSink` (`location.sink.LocationSink`):
it persists the fix (the store's ``fixes`` table, pending by caller when no
incident matched) and publishes ``location_changed`` on the live bus, so the
console's map shows it within a second (DESIGN §7).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import Config
from ..location.fix import Fix
from ..location.invite import LocationBody, LocationReport, read_invite, with_location
from ..location.numbers import normalise_number
from ..logs import get_logger
from ..net.geoloc_fetch import fetch_location
from ..records import Store
from ..sip.message import Request


class LocationServices(Protocol):
    """What the location work needs of the centre (a narrow slice of CallServices)."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    def wall(self) -> float: ...

    def publish(self, kind: str, *, incident_id: str | None = ...) -> None: ...


__all__ = [
    "CallLocation",
    "LocationPublisher",
    "StoreLocationSink",
    "TimelineWriter",
    "agency_location",
    "best_fix",
    "fetch_context",
    "read_location",
]

log = get_logger("location")

_RUNNING: set[asyncio.Task[None]] = set()  # fix writes and dereferences under way
LOCATION_CHANGED = "location_changed"  # the live event the console's map listens for


# (live event kind, incident id): the centre's live bus, narrowed to what a fix needs.
LocationPublisher = Callable[[str, str], None]


class TimelineWriter(Protocol):
    async def event(self, kind: str, detail: Mapping[str, Any] | str | None = None) -> bool: ...


class StoreLocationSink:
    """The `LocationSink` of the running centre: each fix to the store, then a live event.

    `fix_received` never blocks: the write runs as a task of its own (kept
    here until done, so none is lost to the garbage collector), and a failed
    write is logged with the fix rather than raised into the caller.
    """

    def __init__(
        self, store: Store, *, publish: LocationPublisher | None = None, window_s: float
    ) -> None:
        self.store = store
        self.publish = publish
        self.window_s = window_s
        # Tasks live here until done (the loop keeps only weak references); the set is
        # the module's, so a fix being written outlives the call that received it.
        self._tasks = _RUNNING

    def fix_received(
        self, fix: Fix, *, caller: str | None, incident_id: str | None, received_at: float
    ) -> None:
        self.spawn(self.save(fix, caller=caller, incident_id=incident_id, received_at=received_at))

    def spawn(self, aw: Awaitable[None]) -> None:
        async def run() -> None:
            await aw

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def save(
        self, fix: Fix, *, caller: str | None, incident_id: str | None, received_at: float
    ) -> None:
        try:
            await self.store.add_fix(
                fix.with_caller(caller or fix.caller),
                incident_id=incident_id,
                received_at=received_at,
            )
        except Exception as exc:  # noqa: BLE001 - a lost fix is logged, never raised
            log.error(
                "fix_not_stored",
                incident_id=incident_id,
                caller=caller,
                source=fix.source,
                error=repr(exc)[:200],
            )
            return
        self.changed(incident_id)

    def changed(self, incident_id: str | None) -> None:
        if self.publish is not None and incident_id is not None:
            self.publish(LOCATION_CHANGED, incident_id)

    async def claim(self, incident_id: str, caller: str | None, *, now: float) -> int:
        """Attach the caller's pending fixes (within the window) to a new incident."""
        taken = int(await self.store.claim_fixes(caller, incident_id, since=now - self.window_s))
        if taken:
            self.changed(incident_id)
        return taken


def read_location(invite: Request, *, now: float) -> tuple[bytes | None, LocationReport]:
    """The SDP offer of an emergency INVITE (None: none, we offer) and its location report.

    The full Content-Type header is passed: the multipart boundary is a parameter.
    """
    return read_invite(
        invite.headers.get("Content-Type"),
        invite.body,
        geolocation=invite.headers.get_all("Geolocation"),
        call_info=invite.headers.get_all("Call-Info"),
        now=now,
    )


def fetch_context(config: Config) -> ssl.SSLContext:
    """The TLS context for dereferencing: the system's CAs plus ``[location] ca_file``.

    Raises `OSError`/`ssl.SSLError` for a file that cannot be read as PEM.
    """
    context = ssl.create_default_context()
    if config.location.ca_file:
        context.load_verify_locations(cafile=str(config.path(config.location.ca_file)))
    return context


@dataclass(slots=True, kw_only=True)
class CallLocation:
    """One call's location work, from the INVITE's report to the fetched references."""

    report: LocationReport
    caller: str | None  # E.164, as AML fixes name it
    sink: StoreLocationSink
    config: Config
    host: str  # the centre's SIP host: the PIDF-LO entity and Content-ID domain
    fetches: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def arrive(
        cls, invite: Request, caller_number: str | None, centre: LocationServices
    ) -> tuple[bytes | None, CallLocation]:
        """On a new INVITE: (the SDP offer or None, this call's location work)."""
        config = centre.config

        def publish(kind: str, incident_id: str) -> None:
            centre.publish(kind, incident_id=incident_id)

        sdp, report = read_location(invite, now=centre.wall())
        sink = StoreLocationSink(centre.store, publish=publish, window_s=config.aml.match_window_s)
        caller = normalise_number(caller_number, region=config.aml.region)
        return sdp, cls(
            report=report, caller=caller, sink=sink, config=config, host=config.sip.advertise
        )

    async def attach(self, incident_id: str, journal: TimelineWriter, *, now: float) -> None:
        """After the answer: pending AML fixes claimed, the INVITE's fixes kept, the
        report's notes and data on the timeline, references fetched as their own tasks."""
        sink, config, event = self.sink, self.config, journal.event
        claimed = await sink.claim(incident_id, self.caller, now=now)
        for fix in self.report.fixes:
            sink.fix_received(fix, caller=self.caller, incident_id=incident_id, received_at=now)
        report = self.report
        if report.fixes or report.references or claimed:
            await event(
                "location_received",
                {
                    "fixes": len(report.fixes),
                    "valid": sum(1 for f in report.fixes if f.valid),
                    "invalid": [f.reason for f in report.fixes if not f.valid][:10],
                    "references": list(report.references)[:10],
                    "claimed_aml": claimed,
                },
            )
        if report.notes:
            await event("location_notes", {"notes": list(report.notes)[:20]})
        if report.call_info or report.data:
            await event(
                "additional_data",
                {
                    "call_info": [c.to_json() for c in report.call_info],
                    "data": [d.to_json() for d in report.data],
                },
            )
        for uri in report.references:
            task = asyncio.get_running_loop().create_task(
                self._fetch(uri, incident_id=incident_id, sink=sink, config=config)
            )
            self.fetches.append(task)
            _RUNNING.add(task)
            task.add_done_callback(_RUNNING.discard)

    async def _fetch(
        self, uri: str, *, incident_id: str, sink: StoreLocationSink, config: Config
    ) -> None:
        try:
            context = fetch_context(config)
        except (OSError, ssl.SSLError) as exc:
            fixes: Sequence[Fix] = (
                Fix.invalid(
                    source="pidf",
                    at=time.time(),
                    reason=f"{uri[:120]}: location.ca_file {config.location.ca_file}: {exc}",
                ),
            )
        else:
            fixes = await fetch_location(uri, clock=time.time, ssl_context=context)
        received = time.time()
        for fix in fixes:
            await sink.save(fix, caller=self.caller, incident_id=incident_id, received_at=received)

    async def agency_body(
        self, sdp: bytes, headers: list[tuple[str, str]], incident_id: str | None
    ) -> tuple[bytes, str]:
        """The body and Content-Type of the INVITE to an agency: the SDP with the
        caller's best fix by value (RFC 6442), the headers extended; plain SDP when
        there is no valid fix or the store cannot say."""
        if incident_id is None:
            return sdp, "application/sdp"
        try:
            fixes = await self.sink.store.fixes_for(incident_id)
        except Exception as exc:  # noqa: BLE001 - the transfer goes on without location
            log.error("location_unavailable", incident_id=incident_id, error=repr(exc)[:200])
            return sdp, "application/sdp"
        body = agency_location(
            sdp, fixes, caller=self.caller or "", incident_id=incident_id, host=self.host
        )
        if body is None:
            return sdp, "application/sdp"
        headers += [("Geolocation", body.geolocation), ("Geolocation-Routing", body.routing)]
        return body.body, body.content_type

    def cancel(self) -> None:
        for task in self.fetches:
            task.cancel()


def best_fix(fixes: Sequence[Fix]) -> Fix | None:
    """The newest valid fix (the incident's shown position, `location_json`'s rule)."""
    return next((f for f in sorted(fixes, key=lambda f: f.at, reverse=True) if f.valid), None)


def agency_location(
    sdp: bytes, fixes: Sequence[Fix], *, caller: str, incident_id: str, host: str
) -> LocationBody | None:
    """The caller's location by value for the INVITE to an agency, or None (plain SDP)."""
    fix = best_fix(fixes)
    if fix is None:
        return None
    who = caller.lstrip("+") or "anonymous"
    try:
        return with_location(
            sdp, fix, entity=f"pres:{who}@{host}", content_id=f"{incident_id}@{host}"
        )
    except ValueError as exc:
        log.warning("location_not_passed", incident_id=incident_id, reason=str(exc)[:200])
        return None
