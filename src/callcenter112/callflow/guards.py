"""The edge's rules at the points where the call flow meets the outside (issue 11).

The call flow calls these with one short line each (`# issue 11` next to
them); every rule lives here and in the pure modules it composes:

* **What leaves the centre.** `leg_headers()`: every outbound leg's extra
  headers go through `outside.headers_for` for the party the leg reaches, so
  no internal URL or `X-Incident-ID` reaches a citizen, an agency or the
  carrier. `callback_target()`: a callback dials only a valid Indonesian
  number (`outside.callable_number`).
* **SRTP on operator legs** (SDES, RFC 4568). `[[operator]] srtp` is
  ``off`` (plain RTP), ``optional`` (RTP/AVP with an `a=crypto` line: SRTP
  when the phone answers with a key, RFC 4568 §7.1.1's best effort) or
  ``mandatory`` (RTP/SAVP, what baresip's ``srtp-mand`` needs). `LegSrtp`
  holds the offer's key until the answer; `for_answer()` gives the leg's
  `SrtpContext` (None for plain RTP) or raises SdpError(488).
* **The recording's health.** `recording_health_event()` turns the recorder's
  degraded/recovered changes into the incident's timeline events;
  `settle_recorder()` gives a held recording a moment to reach the disk
  before it is closed.
* **The Call-ID never reaches a path.** `unrecorded_file()`.
* **Spoofed trunk INVITEs.** A caller that never ACKed our 200 and never
  sent a packet may be a forged source address: `hold_unverified_callbacks()`
  marks its callback task for a supervisor's review (`UNVERIFIED`), shown on
  the console's and the wallboard's callback lists; `may_dial()` keeps the
  console's "Call back" (operators) from dialling it.
* **Capacity that cannot deadlock.** `admits_caller()`: a caller is admitted
  only while the operators' and agencies' legs keep their RTP pairs in
  reserve (`caller_pairs()`), so a free operator can always be offered a
  waiting caller: a full range never leaves every offer failing for want of
  a pair (issue 11: 110 waiting callers on 100 pairs kept a new operator
  idle for 35 s). The refused caller gets 503 and the refused-incident
  record with its callback task, as at `sip.max_calls`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..config import RTP_PAIRS_PER_CALL
from ..faults import DiskWatch
from ..incidents import CallbackResult, LegRole
from ..logs import get_logger
from ..media.recorder import RecordingDegraded, RecordingHealth, unrecorded_name
from ..offer_answer import answered_crypto, secure_offer
from ..outside import Party, callable_number, headers_for
from ..records.engines import is_postgresql, sqlite_path
from ..rtp.srtp import CryptoAttribute, SrtpContext, SrtpError
from ..sdp import Attribute, SdpError, SessionDescription

if TYPE_CHECKING:
    from ..config import Config
    from ..incidents import Callback
    from ..media.recorder import IncidentRecorder
    from ..net.media import MediaEngine, MediaLeg
    from ..records import Store

log = get_logger("guards")


class _Recording(Protocol):
    @property
    def recorder(self) -> IncidentRecorder: ...


class _Journal(Protocol):
    async def event(self, kind: str, detail: Mapping[str, Any] | str | None = None) -> bool: ...


class _Call(Protocol):
    """What the health hook needs of a call (callflow.call.EmergencyCall)."""

    @property
    def recording(self) -> _Recording | None: ...

    @property
    def journal(self) -> _Journal: ...


class GuardedCentre(Protocol):
    """What these rules need of the centre (centre.Centre), without importing it."""

    @property
    def store(self) -> Store: ...

    @property
    def media(self) -> MediaEngine: ...

    @property
    def calls(self) -> Mapping[str, _Call]: ...

    @property
    def active(self) -> Collection[object]: ...

    @property
    def operator_users(self) -> Collection[str]: ...

    def wall(self) -> float: ...

    def spawn_write(self, aw: Awaitable[Any]) -> None: ...

    @property
    def config(self) -> Config: ...

    @property
    def stopping(self) -> bool: ...

    def publish(
        self,
        kind: str,
        *,
        operator: str | None = None,
        incident_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...


__all__ = [
    "DISK_CHECK_S",
    "SETTLE_S",
    "SRTP_SUITE",
    "UNVERIFIED",
    "GuardedCentre",
    "LegSrtp",
    "SrtpMode",
    "admits_caller",
    "callback_target",
    "caller_pairs",
    "hold_unverified_callbacks",
    "leg_headers",
    "may_dial",
    "not_callable",
    "operator_srtp",
    "recording_health_event",
    "settle_recorder",
    "softphone_offer",
    "start_disk_watch",
    "storage_folders",
    "unrecorded_file",
    "watch_recording_health",
]

# How often the low-disk alarm measures the evidence folders (statvfs: cheap).
DISK_CHECK_S: Final = 60.0
# RFC 4568 §6.2.1: the suite every SDES softphone offers (80-bit tag).
SRTP_SUITE: Final = "AES_CM_128_HMAC_SHA1_80"
# How long a recorder whose disk refused writes may take to catch up before it
# is closed anyway (what is still held is then counted as dropped): two of the
# media layer's ~1 s flush rounds.
SETTLE_S: Final = 2.0
_SETTLE_POLL_S: Final = 0.05

# The callback review reason of a caller that never proved its address.
UNVERIFIED: Final = "unverified_caller"

_PARTY: Final = {
    LegRole.OPERATOR: Party.OPERATOR,
    LegRole.SUPERVISOR: Party.OPERATOR,
    LegRole.AGENCY: Party.AGENCY,
    LegRole.CALLBACK: Party.CITIZEN,
    LegRole.CALLER: Party.CITIZEN,
}


def leg_headers(role: LegRole, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` as they may go to the party a `role` leg reaches."""
    return headers_for(_PARTY[role], headers)


def callback_target(number: str) -> str | None:
    """The number a callback may dial, or None (then the attempt fails and the task stays open)."""
    return callable_number(number)


async def not_callable(store: Store, callback_id: int, actor: str, *, at: float) -> CallbackResult:
    """A callback whose number is not callable: a failed attempt is recorded
    (the task stays open for a person to decide) and nothing is dialled."""
    await store.callback_attempt(
        callback_id,
        actor=actor,
        at=at,
        result=CallbackResult.FAILED,
        note="not a callable Indonesian number",
    )
    return CallbackResult.FAILED


def unrecorded_file(call_id: str) -> str:
    """The file stem of a recording without an incident (never the Call-ID itself)."""
    return unrecorded_name(call_id)


class SrtpMode(StrEnum):
    OFF = "off"
    OPTIONAL = "optional"
    MANDATORY = "mandatory"


def operator_srtp(config: Config, user: str) -> SrtpMode:
    """The SRTP setting of operator `user` (off for anyone not configured)."""
    for op in config.operator:
        if op.user == user:
            return SrtpMode(op.srtp)
    return SrtpMode.OFF


def softphone_offer(
    config: Config, sip_user: str, offer: SessionDescription
) -> tuple[LegSrtp, SessionDescription]:
    """Our key for a leg to the softphone of `sip_user` (an operator's, a
    supervisor's, a callback's) and `offer` carrying it, per that
    [[operator]]'s `srtp`: the one rule for every leg to a centre phone."""
    return LegSrtp.for_offer(operator_srtp(config, sip_user), offer)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegSrtp:
    """Our key for one leg's offer, kept until its answer."""

    mode: SrtpMode
    local: CryptoAttribute | None

    @classmethod
    def for_offer(
        cls, mode: SrtpMode, offer: SessionDescription, *, key_and_salt: bytes | None = None
    ) -> tuple[LegSrtp, SessionDescription]:
        """Our key (from `os.urandom` unless given) and `offer` carrying it."""
        if mode is SrtpMode.OFF:
            return cls(mode=mode, local=None), offer
        crypto = CryptoAttribute.generate(
            tag=1, suite=SRTP_SUITE, key_and_salt=key_and_salt or os.urandom(30)
        )
        if mode is SrtpMode.MANDATORY:
            return cls(mode=mode, local=crypto), secure_offer(offer, crypto)
        line = Attribute(name="crypto", value=crypto.serialize())
        media = tuple(
            replace(m, attributes=(*m.attributes, line))
            if m.media.lower() == "audio" and m.port != 0
            else m
            for m in offer.media
        )
        return cls(mode=mode, local=crypto), replace(offer, media=media)

    def for_answer(
        self, offer: SessionDescription, answer: SessionDescription
    ) -> SrtpContext | None:
        """The leg's SRTP context, or None for plain RTP; SdpError when a
        mandatory leg's answer has no usable key."""
        if self.local is None:
            return None
        if self.mode is SrtpMode.MANDATORY:
            return SrtpContext(local=self.local, remote=answered_crypto(offer, answer))
        for m in answer.media:
            if m.media.lower() != "audio" or m.port == 0:
                continue
            for value in m.attribute_values("crypto"):
                try:
                    theirs = CryptoAttribute.parse(value or "")
                except SrtpError:
                    continue
                if (theirs.tag, theirs.suite) == (self.local.tag, self.local.suite):
                    return SrtpContext(local=self.local, remote=theirs)
            if m.proto.upper() == "RTP/SAVP":
                raise SdpError(
                    "answer is RTP/SAVP without a usable key (RFC 4568 §7.1.2)", status_hint=488
                )
        return None  # best effort: the phone answered plain RTP


def recording_health_event(change: RecordingHealth) -> tuple[str, dict[str, int | str]]:
    """The incident timeline event for one recorder health change."""
    if isinstance(change, RecordingDegraded):
        return "recording_degraded", {"error": change.error, "pending_bytes": change.pending_bytes}
    return "recording_recovered", {"dropped_bytes": change.dropped_bytes}


async def settle_recorder(rec: IncidentRecorder, *, within_s: float = SETTLE_S) -> bool:
    """Wait up to `within_s` for the audio a refusing disk made the recorder
    hold to be written; True when nothing is held any more."""
    # Polled: the media layer's flush thread writes it, nothing signals the loop.
    for _ in range(max(1, round(within_s / _SETTLE_POLL_S))):
        if not rec.pending_bytes:
            return True
        await asyncio.sleep(_SETTLE_POLL_S)
    return rec.pending_bytes == 0


def watch_recording_health(centre: GuardedCentre) -> None:
    """Put the recorders' degraded/recovered changes on their incidents'
    timelines (`centre.media.on_recording_health`)."""

    def on_health(rec: IncidentRecorder, change: RecordingHealth) -> None:
        kind, detail = recording_health_event(change)
        for call in list(centre.calls.values()):
            if call.recording is not None and call.recording.recorder is rec:
                centre.spawn_write(call.journal.event(kind, detail))
                return

    centre.media.on_recording_health = on_health


def caller_pairs(capacity: int, takers: int) -> int:
    """How many of `capacity` RTP pairs waiting and talking callers may hold:
    the rest is kept for the operator and agency legs of `takers` operators
    (RTP_PAIRS_PER_CALL - 1 each). A range too small for that reserve still
    admits a third of its pairs (and at least one caller): check-config warns."""
    reserve = (RTP_PAIRS_PER_CALL - 1) * takers
    return max(1, capacity - reserve, capacity // RTP_PAIRS_PER_CALL)


def admits_caller(centre: GuardedCentre) -> bool:
    """May one more caller be answered without eating into the reserve?"""
    return len(centre.active) < caller_pairs(centre.media.pool.capacity, len(centre.operator_users))


async def hold_unverified_callbacks(
    store: Store, incident_id: str | None, media: MediaLeg | None, *, at: float
) -> bool:
    """After a call ended for a missing ACK: if the caller never sent a single
    packet either, its callback tasks wait for a supervisor. True when held."""
    if incident_id is None or (media is not None and media.stats().packets > 0):
        return False
    try:
        await store.callback_review(incident_id, reason=UNVERIFIED, at=at)
    except Exception as exc:  # noqa: BLE001 - the task stays open; people still see it
        log.error("callback_review_failed", incident_id=incident_id, error=str(exc))
        return False
    log.warning("callback_held_for_review", incident_id=incident_id, reason=UNVERIFIED)
    return True


def may_dial(callback: Callback, *, supervisor: bool) -> bool:
    """A task held for review is dialled only on a supervisor's decision."""
    return callback.review is None or supervisor


def storage_folders(config: Config) -> list[Path]:
    """The folders the centre's evidence is written to: the SQLite database's
    (none for PostgreSQL: its server watches its own disk) and the recordings'.
    What the low-disk alarm and /healthz's disk probes watch."""
    folders = []
    if not is_postgresql(config.storage.database):
        folders.append(sqlite_path(config.storage.database, config.path).parent)
    folders.append(config.path(config.storage.recordings))
    return folders


def start_disk_watch(centre: GuardedCentre, *, every_s: float = DISK_CHECK_S) -> DiskWatch:
    """Every `every_s`, measure the evidence folders; each low-disk change is
    published to the wallboard (live event `low_disk`: folder, free and
    threshold bytes, low or cleared). The first check runs at once."""
    storage = centre.config.storage
    watch = DiskWatch(
        storage_folders(centre.config), threshold_bytes=storage.low_disk_mb * 1_000_000
    )
    loop = asyncio.get_running_loop()

    async def check() -> None:
        for alarm in await asyncio.to_thread(watch.check):
            centre.publish(
                "low_disk",
                data={
                    "folder": alarm.folder.name,
                    "free_bytes": alarm.free_bytes,
                    "threshold_bytes": alarm.threshold_bytes,
                    "low": alarm.low,
                },
            )

    def tick() -> None:
        if centre.stopping:
            return
        centre.spawn_write(check())
        loop.call_later(every_s, tick)

    tick()
    return watch
