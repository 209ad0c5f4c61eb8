"""SIP capture per incident: every message of an incident's dialogs, kept with it (issue 16).

The transport hands every SIP message it receives or sends to `tap`
(direction, bytes, peer). Messages wait briefly, by Call-ID, until the call
flow has bound that Call-ID to an incident: the caller's INVITE arrives
before its incident exists, an operator's INVITE leaves before the leg has a
dialog. Every `FLUSH_S` the waiting messages are matched against the live
calls (the caller leg, each operator, agency and supervisor leg), masked
(`sip.capture.mask_secrets`), added to the incident's `CaptureBook` (capped
at `MAX_CAPTURE_BYTES`) and written to the store's `sip_messages`.

A Call-ID once bound stays bound (bounded LRU), so the BYE and its 200
after a call ended still land on the incident. Messages nobody claims
(REGISTER, qualify OPTIONS, refused INVITEs) are dropped after
`UNCLAIMED_S`; at most `MAX_WAITING` wait at a time.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..logs import get_logger
from ..sip.capture import MAX_CAPTURE_BYTES, CaptureBook, CapturedMessage, mask_secrets
from ..sip.peer import Peer

if TYPE_CHECKING:
    from ..centre import Centre

__all__ = [
    "FLUSH_S",
    "MAX_BOUND",
    "MAX_WAITING",
    "UNCLAIMED_S",
    "Binding",
    "IncidentCapture",
    "call_id_of",
    "centre_bindings",
]

log = get_logger("capture")

FLUSH_S = 0.5
UNCLAIMED_S = 30.0  # an incident row is written within milliseconds of its INVITE
MAX_WAITING = 4096  # messages; a REGISTER flood cannot grow memory past this
MAX_BOUND = 20_000  # Call-IDs remembered (a few per incident)
MAX_BOOKS = 2_000  # incidents whose byte count is kept in memory


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    incident_id: str
    leg: str  # "caller", "operator:op1", "agency:damkar", "supervisor:sup1"


class CaptureStore(Protocol):
    async def add_sip_messages(self, incident_id: str, messages: list[CapturedMessage]) -> None: ...

    async def sip_messages(self, incident_id: str) -> list[CapturedMessage]: ...


def call_id_of(data: bytes) -> str | None:
    """The Call-ID header (or its compact form `i`) of a SIP message."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode("utf-8", "replace")
    return None


class IncidentCapture:
    """The tap, the matching and the store writes; also the web's `CaptureSource`."""

    def __init__(
        self,
        *,
        local: tuple[str, int],
        bindings: Callable[[], Iterable[tuple[str, Binding]]],
        store: CaptureStore,
        write: Callable[[Any], None],
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        cap: int = MAX_CAPTURE_BYTES,
    ) -> None:
        self.local = local
        self._bindings = bindings
        self.store = store
        self._write = write
        self.wall = wall
        self.mono = mono
        self.cap = cap
        self._waiting: deque[tuple[float, str, CapturedMessage]] = deque(maxlen=MAX_WAITING)
        self._bound: OrderedDict[str, Binding] = OrderedDict()
        self._books: OrderedDict[str, CaptureBook] = OrderedDict()
        self.dropped_unclaimed = 0

    # -- the transport's side --------------------------------------------------------

    def tap(self, direction: str, data: bytes, peer: Peer) -> None:
        call_id = call_id_of(data)
        if call_id is None:
            return
        message = CapturedMessage(
            at=self.wall(),
            direction="in" if direction == "in" else "out",
            local=self.local,
            remote=(peer.host, peer.port),
            transport=peer.transport,
            data=data,
        )
        self._waiting.append((self.mono(), call_id, message))

    # -- the loop's side ----------------------------------------------------------------

    def flush(self) -> None:
        """Match waiting messages to incidents and write them (call every FLUSH_S)."""
        if not self._waiting:
            return
        live = dict(self._bindings())
        now = self.mono()
        kept: deque[tuple[float, str, CapturedMessage]] = deque(maxlen=MAX_WAITING)
        out: dict[str, list[CapturedMessage]] = {}
        while self._waiting:
            at, call_id, message = self._waiting.popleft()
            binding = live.get(call_id) or self._bound.get(call_id)
            if binding is None:
                if now - at < UNCLAIMED_S:
                    kept.append((at, call_id, message))
                else:
                    self.dropped_unclaimed += 1
                continue
            self._remember(call_id, binding)
            book = self._book(binding.incident_id)
            masked = CapturedMessage(
                at=message.at,
                direction=message.direction,
                local=message.local,
                remote=message.remote,
                transport=message.transport,
                data=mask_secrets(message.data),
                leg=binding.leg,
            )
            if book.add(masked):
                out.setdefault(binding.incident_id, []).append(masked)
        self._waiting = kept
        for incident_id, messages in out.items():
            self._write(self.store.add_sip_messages(incident_id, messages))

    def _remember(self, call_id: str, binding: Binding) -> None:
        self._bound[call_id] = binding
        self._bound.move_to_end(call_id)
        while len(self._bound) > MAX_BOUND:
            self._bound.popitem(last=False)

    def _book(self, incident_id: str) -> CaptureBook:
        book = self._books.get(incident_id)
        if book is None:
            # Only the byte count matters here: the messages themselves are in the store.
            book = self._books[incident_id] = _CountingBook(cap=self.cap)
            while len(self._books) > MAX_BOOKS:
                self._books.popitem(last=False)
        self._books.move_to_end(incident_id)
        return book

    # -- CaptureSource ----------------------------------------------------------------

    async def messages(self, incident_id: str) -> list[CapturedMessage]:
        self.flush()
        return await self.store.sip_messages(incident_id)


class _CountingBook(CaptureBook):
    """A `CaptureBook` that counts bytes against the cap but keeps no copies."""

    def add(self, message: CapturedMessage) -> bool:
        if self.size + len(message.data) > self.cap:
            self.dropped += 1
            return False
        self.size += len(message.data)
        return True


def centre_bindings(centre: Centre) -> Iterable[tuple[str, Binding]]:
    """Call-ID → incident and leg, for every live call's caller and outbound legs."""
    out: list[tuple[str, Binding]] = []
    for call in list(centre.active):
        incident = call.incident_id
        if incident is None:
            continue
        out.append((call.caller.invite.call_id, Binding(incident_id=incident, leg="caller")))
        for leg in call._legs:  # every leg the call opened (operators, agencies, supervisors)
            out.append(
                (leg.invite.call_id, Binding(incident_id=incident, leg=f"{leg.role}:{leg.name}"))
            )
    return out
