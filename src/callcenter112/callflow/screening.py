"""Silent, repeat and watch-listed callers in the running call (issue 12).

The rules are pure and live elsewhere — `callers.py` (history, the repeat
rule), `watchlist.py` (the supervisor's list), `media/vad.py` (is somebody
speaking?), `ivr.py` (the silent step), `acd.py` (urgent and watch-listed
places) — this module is where one `EmergencyCall` asks them, at the hooks
of docs/architecture.md "Prank, silent and repeat callers":

* **arrival** (`arrive`): the number's earlier calls in the last 30 days
  from the store → `repeat_caller` (a `flag` event linking the earlier
  incidents); the store's watch list → `watch_listed`;
* **IVR** (`listen`, `heard`): every caller frame goes to a
  `VoiceActivityDetector`; its rising edge becomes a `CallerSpeech` message
  in the call's inbox, which the call hands to `IvrMenu.speech`;
* **queue** (`finished`): a `flag` event per word of `IvrFinished.flags`,
  and the ACD's `urgent` / `watch_listed` arguments.

The priority callback for a silent caller who hangs up is the store's
(`close_incident` reads the incident's flags, `incidents.callback_is_priority`).

**Dispose and end** (`end_call`, `ended_by_operator`): the console's
`web.console.CallEnder` — an operator, a person, ends a prank or ghost call;
the call's actor writes `ended_by_operator {actor, reason}` and hangs up
every leg. The system itself never does.

Nothing here refuses, delays or ends a call: a store that fails is logged
and the caller is served unflagged. Withheld numbers get nothing (the pure
functions return empty for them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ..callers import MONTH_S, CallerRules, caller_history, repeat_verdict
from ..config import Config
from ..incidents import (
    ANONYMOUS,
    FLAG_REPEAT_CALLER,
    FLAG_SILENT_CONFIRMED,
    FLAG_WATCH_LISTED,
    Status,
    flag_event_detail,
    normalize_caller,
)
from ..ivr import IvrFinished
from ..live import ControlError
from ..media.g711 import Codec
from ..media.vad import VoiceActivityDetector
from ..records import Store
from .inbox import Command, Message

__all__ = ["END_CALL", "CallScreening", "Listener", "end_call", "ended_by_operator"]

END_CALL = "end_call"  # the console command's name in the call's inbox
# Same as centre._command: a call that has not acted on it by then is stuck.
END_CALL_WAIT_S = 10.0


class _Log(Protocol):
    def error(self, event: str, **kw: object) -> object: ...


class _Journal(Protocol):
    async def event(self, kind: str, detail: dict[str, object]) -> bool: ...


class _EndableCall(Protocol):
    """What dispose-and-end needs of `call.EmergencyCall` (no import: no cycle)."""

    @property
    def journal(self) -> _Journal: ...

    def post(self, message: Message) -> None: ...

    async def end(self, status: Status, reason: str, *, bye_caller: bool) -> None: ...


class Listener(Protocol):
    """The caller's media leg, as far as speech detection needs it."""

    on_audio: Callable[[bytes, Codec], None] | None


class CallScreening:
    """One call's issue-12 state: who the number is, whether the caller spoke."""

    __slots__ = ("_detector", "_listening", "config", "listed", "log", "number", "store")

    def __init__(self, *, store: Store, config: Config, caller: str, log: _Log) -> None:
        self.store = store
        self.config = config
        self.number = normalize_caller(caller)
        self.log = log
        self.listed = False
        self._detector: VoiceActivityDetector | None = None
        self._listening: Listener | None = None

    # -- arrival -------------------------------------------------------------------

    async def arrive(self, journal: _Journal, *, now: float, incident_id: str | None) -> None:
        """Flag a repeat caller and a watch-listed number (never withheld ones)."""
        if self.number == ANONYMOUS:
            return
        try:
            calls = await self.store.calls_from(self.number, since=now - MONTH_S, until=now)
            earlier = [c for c in calls if c.incident_id != incident_id]
            verdict = repeat_verdict(
                caller_history(self.number, earlier, now),
                CallerRules.from_config(self.config.callers),
            )
            self.listed = await self.store.is_watch_listed(self.number, now)
        except Exception as exc:  # noqa: BLE001 - the caller is served unflagged
            self.log.error("caller_screening_failed", error=repr(exc))
            return
        if verdict.repeat_caller:
            await journal.event(
                "flag",
                flag_event_detail(
                    FLAG_REPEAT_CALLER,
                    earlier=list(verdict.earlier),
                    calls_10min=verdict.calls_10min,
                ),
            )
        if self.listed:
            await journal.event("flag", flag_event_detail(FLAG_WATCH_LISTED))

    # -- IVR: speech detection -------------------------------------------------------

    def listen(self, media: Listener | None, on_speech: Callable[[], None]) -> None:
        """Feed every caller frame to a fresh detector; `on_speech` on each onset."""
        if media is None:
            return
        detectors: dict[Codec, VoiceActivityDetector] = {}

        def heard(payload: bytes, codec: Codec) -> None:
            detector = detectors.get(codec)
            if detector is None:
                detector = detectors[codec] = VoiceActivityDetector(codec)
            if detector.feed(payload):
                on_speech()

        media.on_audio = heard
        self._listening = media

    def stop_listening(self) -> None:
        """The IVR is over: the detector costs nothing more."""
        if self._listening is not None:
            self._listening.on_audio = None
            self._listening = None

    # -- queue -----------------------------------------------------------------------

    async def finished(self, journal: _Journal, done: IvrFinished) -> tuple[bool, bool]:
        """Write the IVR's flags; return the ACD's (`urgent`, `watch_listed`)."""
        self.stop_listening()
        for flag in done.flags:
            await journal.event("flag", flag_event_detail(flag, reason=done.reason))
        return FLAG_SILENT_CONFIRMED in done.flags, self.listed


# -- dispose and end (web.console.CallEnder) ----------------------------------------------


async def end_call(call: _EndableCall, *, actor: str, reason: str) -> None:
    """Ask the call's actor to end the call for `actor`; `ControlError` if it cannot."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    call.post(Command(END_CALL, {"actor": actor, "reason": reason}, done))
    try:
        await asyncio.wait_for(done, END_CALL_WAIT_S)
    except TimeoutError:
        raise ControlError(504, "the call did not answer in time") from None
    except Exception as exc:  # noqa: BLE001 - the call ended meanwhile
        raise ControlError(404, str(exc)) from None


async def ended_by_operator(call: _EndableCall, command: Command) -> None:
    """In the call's actor: the timeline event, then every leg hung up."""
    await call.journal.event(
        "ended_by_operator",
        {"actor": str(command.args["actor"]), "reason": str(command.args["reason"])},
    )
    await call.end(Status.COMPLETED, "ended_by_operator", bye_caller=True)
    if not command.done.done():
        command.done.set_result(None)
