"""RFC 3264 offer/answer for one G.711 audio stream: what we answer, offer and accept.

This module owns the media negotiation of every call leg: answering the offers of
carriers and callers' phones (`answer_offer`), offering to operators' softphones, agencies
and supervisors (`make_offer`) and reading their answers (`accept_answer`). It is pure:
descriptions in, a `Negotiated` record and our SDP out. SIP (which message carries the
offer, glare, 488 on a re-INVITE) belongs to the dialog layer; the bytes belong to `sdp`.

Theory of operation (RFC 3264)
------------------------------
§6: the answer has exactly as many m= lines as the offer, in the same order. We accept
the first audio stream we can use and decline every other stream — video, T.140 text,
application, and extra audio streams — with port 0, copying its media type, proto and
formats. The accepted stream is plain RTP (RTP/AVP; RTP/AVPF is answered in kind,
RFC 4585 §5: AVPF and AVP entities interwork); SRTP profiles need keys
we do not have and are declined, so a phone that offers SAVP and then AVP (best-effort
SRTP) lands on its AVP stream.

Codec choice: the first format in the *offerer's* order (RFC 3264 §6.1 recommends the answer
keep the offerer's order of preference) that is PCMA or PCMU and appears in `prefer`.
`prefer` is therefore the set of codecs we accept; its order only matters in
`make_offer`. Reason: the offerer knows which law its own network carries natively (an
Indonesian carrier lists PCMA first; a mobile gateway that lists PCMU first would
otherwise transcode in its own network before we transcode again). Re-INVITEs: pass the
codec in use as `current`; it is kept while the new offer still lists it, so a recording
never changes law mid-call. The answer names exactly one codec (plus telephone-event),
so the peer cannot switch codecs under the recorder (RFC 3264 §6.1 allows a subset).

DTMF: telephone-event/8000 (RFC 4733 §7.1.1: its clock rate is the audio's, 8 kHz for
G.711) on whatever payload type the offerer chose; we answer it with events 0-15.

Direction (§6.1, §8.4): each side's send/receive flags. Our answer sends only if the
offerer receives and we want to send, and receives only if the offerer sends and we
want to receive; `direction_override` is what we want (default sendrecv). A connection
address of 0.0.0.0 (RFC 2543 hold) means "neither RTP nor RTCP should be sent to the
peer" (§8.4): it clears the offerer's receive flag. The remote is *on hold* when it does
not want our media (sendonly, inactive or 0.0.0.0); the answer then says recvonly (or
inactive), never held-for-held (§8.4 "SHOULD NOT automatically return ... on hold").

Versions (§5, §8): the caller keeps one o= session id per dialog and increments
`session_version` for every new description it sends.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from callcenter112.media.g711 import Codec
from callcenter112.rtp.srtp import CryptoAttribute, SrtpError
from callcenter112.sdp import (
    MAX_PACKET_TIME_MS,
    MAX_PORT,
    Attribute,
    Connection,
    Direction,
    Fmtp,
    MediaDescription,
    Origin,
    PacketTime,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
)

__all__ = [
    "DEFAULT_PTIME_MS",
    "DTMF_EVENTS",
    "LOCAL_PTIME_MS",
    "MAX_SESSION_NUMBER",
    "NOT_ACCEPTABLE_HERE",
    "SUPPORTED_PROTOS",
    "TELEPHONE_EVENT",
    "Negotiated",
    "accept_answer",
    "answer_offer",
    "answered_crypto",
    "make_offer",
    "secure_offer",
]

NOT_ACCEPTABLE_HERE = 488  # RFC 3261 §21.4.26; RFC 3264 §6 for an unusable offer
# RFC 3551 §4.2: the default packetization interval is 20 ms (used without a=ptime).
DEFAULT_PTIME_MS = 20
# DESIGN §5: one shared 20 ms clock drives every outgoing stream, so we ask for 20 ms.
LOCAL_PTIME_MS = 20
TELEPHONE_EVENT = "telephone-event"  # RFC 4733 §7.1.1 media subtype
_TELEPHONE_EVENT_RATE = 8000  # RFC 4733 §7.1.1: the audio stream's rate; G.711 is 8 kHz
_G711_RATE = 8000  # RFC 3551 Table 4
# RFC 4733 §3.2: events 0-15 are the DTMF digits 0-9, *, #, A-D.
DTMF_EVENTS = "0-15"
# RFC 3551 (AVP) and RFC 4585 (AVPF, interworks with AVP, §5). Not SAVP/SAVPF.
SUPPORTED_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})
# RFC 3711 §12 / RFC 4568: SRTP, only on streams we offer ourselves with SDES
# keys (`secure_offer`), never accepted in an offer we did not key.
_SECURE_PROTO = "RTP/SAVP"
# RFC 3264 §5: "the numeric value of the session id and version in the o line MUST be
# representable with a 64 bit signed integer".
MAX_SESSION_NUMBER = 2**63 - 1
# RFC 3551 §3: payload types 96-127 are dynamic.
_DYNAMIC_PAYLOAD_TYPES = range(96, 128)
_SMALL_NUMBER = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """The outcome of one offer/answer exchange for the audio stream of a call leg.

    codec          the G.711 law both sides use on this leg.
    payload_type   the RTP payload type to *send* it with: the remote's number for the
                   codec (0 or 8, or a dynamic type if the remote mapped G.711 to one).
    dtmf_pt        the remote's telephone-event payload type (send RFC 4733 events with
                   it), None if the remote did not offer/accept telephone-event/8000.
                   For `answer_offer` we receive on the same numbers; for
                   `accept_answer` we receive on the numbers of our own offer.
    remote_address, remote_port
                   where to send RTP (media-level c= over session-level c=).
                   Port 0 or an unspecified address (0.0.0.0 / ::) means "don't send".
                   The address may be a host name if the remote wrote one.
    ptime          packet duration the remote asked for in ms (a=ptime, capped by
                   a=maxptime), 20 when it did not say.
    local_direction   our direction as written in our answer (or implied by the answer
                   for `accept_answer`): `sends` → we may send, `receives` → we listen.
    remote_direction  the remote's direction, with 0.0.0.0 taken as "does not receive".
    on_hold        the remote does not want our media (sendonly, inactive, 0.0.0.0).
    answer         the SDP to send back (`answer_offer`), None for `accept_answer`.
    media_index    index of the negotiated m= line in the offer/answer.
    """

    codec: Codec
    payload_type: int
    dtmf_pt: int | None
    remote_address: str
    remote_port: int
    ptime: int
    local_direction: Direction
    remote_direction: Direction
    on_hold: bool
    answer: SessionDescription | None
    media_index: int

    @property
    def should_send(self) -> bool:
        """RTP may be sent to the remote: we send, it receives, and it gave a destination."""
        return (
            self.local_direction.sends
            and self.remote_port != 0
            and not _is_unspecified(self.remote_address)
        )

    @property
    def should_receive(self) -> bool:
        return self.local_direction.receives


@dataclass(frozen=True, slots=True, kw_only=True)
class _Stream:
    """What the remote's m= line says, once we know we can use it."""

    codec: Codec
    payload_type: int
    dtmf_pt: int | None
    address: str
    port: int
    ptime: int
    direction: Direction  # the remote's, 0.0.0.0 folded in


def _is_unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False  # a host name


def _codec_of(media: MediaDescription, payload_type: int) -> Codec | None:
    """The G.711 law a payload type stands for in `media`, or None."""
    rtpmap = media.rtpmap(payload_type)
    if rtpmap is None:
        # RFC 3551 Table 4 static assignments; other numbers need an rtpmap.
        if payload_type == Codec.PCMU.payload_type:
            return Codec.PCMU
        if payload_type == Codec.PCMA.payload_type:
            return Codec.PCMA
        return None
    name = rtpmap.encoding_name.upper()  # RFC 4855 §3: subtype names are case-insensitive
    mono = rtpmap.encoding_parameters in (None, "1")  # RFC 8866 §6.6: channels, default 1
    if name not in ("PCMU", "PCMA") or rtpmap.clock_rate != _G711_RATE or not mono:
        return None
    return Codec[name]


def _telephone_event_pt(media: MediaDescription) -> int | None:
    for payload_type in media.payload_types:
        rtpmap = media.rtpmap(payload_type)
        if (
            rtpmap is not None
            and rtpmap.encoding_name.lower() == TELEPHONE_EVENT
            and rtpmap.clock_rate == _TELEPHONE_EVENT_RATE
        ):
            return payload_type
    return None


def _ptime(session: SessionDescription, media: MediaDescription) -> int:
    ptime = media.ptime
    if ptime is None:
        # Tolerance: some phones put a=ptime at session level, where RFC 8866 §6.4 does
        # not define it. Read it if it is a plain number.
        for value in session.attribute_values("ptime"):
            if value is not None and _SMALL_NUMBER.fullmatch(value.strip()):
                ptime = int(value.strip())
                break
    if ptime is None or not 1 <= ptime <= MAX_PACKET_TIME_MS:
        ptime = DEFAULT_PTIME_MS
    maxptime = media.maxptime
    if maxptime is not None and maxptime < ptime:
        ptime = maxptime
    return ptime


def _unusable_connection(connection: Connection) -> str | None:
    if connection.nettype != "IN" or connection.addrtype not in ("IP4", "IP6"):
        return f"unsupported address type {connection.nettype} {connection.addrtype}"
    if connection.is_multicast or connection.address == "255.255.255.255":
        return f"multicast or broadcast address {connection.address}"
    return None


def _remote_direction(
    session: SessionDescription, media: MediaDescription, connection: Connection
) -> Direction:
    stated = session.direction_for(media)
    if connection.is_unspecified:
        # RFC 3264 §8.4: 0.0.0.0 means "neither RTP nor RTCP should be sent to the peer".
        return Direction.from_flags(sends=stated.sends, receives=False)
    return stated


def _read_stream(
    session: SessionDescription,
    media: MediaDescription,
    acceptable: Sequence[Codec],
    current: Codec | None,
    *,
    secure: bool = False,
) -> _Stream | str:
    """Our view of one offered/answered audio m= line, or why we cannot use it."""
    if media.port == 0:
        return "stream disabled (port 0)"
    if secure and media.proto.upper() == _SECURE_PROTO:
        pass  # the answer to our own SDES offer (`secure_offer`)
    elif media.proto.upper() not in SUPPORTED_PROTOS:
        return f"transport {media.proto} not supported (plain RTP/AVP only)"
    connection = session.connection_for(media)
    if connection is None:
        return "no c= line"  # only for descriptions built in code: parse requires one
    problem = _unusable_connection(connection)
    if problem is not None:
        return problem
    offered = [
        (payload_type, codec)
        for payload_type in media.payload_types
        if (codec := _codec_of(media, payload_type)) is not None and codec in acceptable
    ]
    if not offered:
        names = "/".join(codec.name for codec in acceptable)
        return f"no common codec (we accept {names})"
    kept = [entry for entry in offered if entry[1] is current]
    payload_type, codec = (kept or offered)[0]
    return _Stream(
        codec=codec,
        payload_type=payload_type,
        dtmf_pt=_telephone_event_pt(media),
        address=connection.address,
        port=media.port,
        ptime=_ptime(session, media),
        direction=_remote_direction(session, media, connection),
    )


def _check_local(local_address: str, local_port: int, session_id: int, version: int) -> str:
    """Validate our own parameters (programming errors → ValueError); return the addrtype."""
    try:
        address = ipaddress.ip_address(local_address)
    except ValueError:
        raise ValueError(f"local_address must be an IP literal: {local_address!r}") from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"local_address must be a unicast address: {local_address!r}")
    if not 1 <= local_port <= MAX_PORT:
        raise ValueError(f"local_port must be 1-{MAX_PORT}: {local_port}")
    for name, number in (("session_id", session_id), ("session_version", version)):
        if not 0 <= number <= MAX_SESSION_NUMBER:
            raise ValueError(f"{name} must be 0-{MAX_SESSION_NUMBER} (RFC 3264 §5): {number}")
    return "IP4" if address.version == 4 else "IP6"


def _acceptable(codecs: Sequence[Codec], what: str) -> tuple[Codec, ...]:
    unique = tuple(dict.fromkeys(codecs))
    if not unique:
        raise ValueError(f"{what} must name at least one codec")
    return unique


def _session(
    *,
    addrtype: str,
    local_address: str,
    session_id: int,
    session_version: int,
    timings: tuple[Timing, ...],
    media: tuple[MediaDescription, ...],
) -> SessionDescription:
    return SessionDescription(
        origin=Origin(
            username="-",
            session_id=session_id,
            session_version=session_version,
            addrtype=addrtype,
            address=local_address,
        ),
        session_name="callcenter112",
        connection=Connection(addrtype=addrtype, address=local_address),
        timings=timings,
        media=media,
    )


def _audio_line(
    *,
    media: str,
    proto: str,
    port: int,
    codecs: Sequence[tuple[int, Codec]],
    dtmf_pt: int | None,
    direction: Direction,
) -> MediaDescription:
    formats = [str(payload_type) for payload_type, _ in codecs]
    attributes: list[RtpMap | Fmtp | PacketTime | Direction] = [
        RtpMap(payload_type=payload_type, encoding_name=codec.name, clock_rate=_G711_RATE)
        for payload_type, codec in codecs
    ]
    if dtmf_pt is not None:
        formats.append(str(dtmf_pt))
        attributes.append(
            RtpMap(
                payload_type=dtmf_pt,
                encoding_name=TELEPHONE_EVENT,
                clock_rate=_TELEPHONE_EVENT_RATE,
            )
        )
        attributes.append(Fmtp(format=str(dtmf_pt), parameters=DTMF_EVENTS))
    attributes.append(PacketTime(milliseconds=LOCAL_PTIME_MS))
    attributes.append(direction)
    return MediaDescription(
        media=media,
        port=port,
        proto=proto,
        formats=tuple(formats),
        attributes=tuple(attributes),
    )


def _declined(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its m= line with port 0; the formats are
    # copied because the line must still name at least one.
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats)


def answer_offer(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    prefer: Sequence[Codec] = (Codec.PCMA, Codec.PCMU),
    session_id: int,
    session_version: int,
    direction_override: Direction | None = None,
    current: Codec | None = None,
) -> Negotiated:
    """Answer a remote offer (initial INVITE or re-INVITE) for one G.711 audio stream.

    `prefer` is the set of codecs we accept (the offerer's order decides among them);
    `current` is the codec in use on a re-INVITE, kept while still offered;
    `direction_override` is the direction we want (e.g. sendonly to hold the remote).
    Raises `SdpError(status_hint=488)` if no audio stream is usable, and ValueError for
    bad local parameters.
    """
    addrtype = _check_local(local_address, local_port, session_id, session_version)
    acceptable = _acceptable(prefer, "prefer")
    wanted = direction_override or Direction.SENDRECV

    chosen: tuple[int, _Stream, Direction] | None = None
    problems: list[str] = []
    answer_media: list[MediaDescription] = []
    for index, media in enumerate(offer.media):
        if chosen is None and media.media.lower() == "audio":
            stream = _read_stream(offer, media, acceptable, current)
            if isinstance(stream, _Stream):
                local = Direction.from_flags(
                    sends=wanted.sends and stream.direction.receives,
                    receives=wanted.receives and stream.direction.sends,
                )
                chosen = (index, stream, local)
                answer_media.append(
                    _audio_line(
                        media=media.media,
                        proto=media.proto,
                        port=local_port,
                        codecs=[(stream.payload_type, stream.codec)],
                        dtmf_pt=stream.dtmf_pt,
                        direction=local,
                    )
                )
                continue
            problems.append(f"m= #{index + 1}: {stream}")
        answer_media.append(_declined(media))

    if chosen is None:
        reason = "; ".join(problems) if problems else "offer has no audio stream"
        raise SdpError(reason, status_hint=NOT_ACCEPTABLE_HERE)
    index, stream, local_direction = chosen
    answer = _session(
        addrtype=addrtype,
        local_address=local_address,
        session_id=session_id,
        session_version=session_version,
        timings=offer.timings,  # RFC 3264 §6: "the t= line in the answer MUST equal ..."
        media=tuple(answer_media),
    )
    return Negotiated(
        codec=stream.codec,
        payload_type=stream.payload_type,
        dtmf_pt=stream.dtmf_pt,
        remote_address=stream.address,
        remote_port=stream.port,
        ptime=stream.ptime,
        local_direction=local_direction,
        remote_direction=stream.direction,
        on_hold=not stream.direction.receives,
        answer=answer,
        media_index=index,
    )


def make_offer(
    *,
    local_address: str,
    local_port: int,
    codecs: Sequence[Codec] = (Codec.PCMA, Codec.PCMU),
    dtmf_pt: int | None = 101,
    session_id: int,
    session_version: int,
    direction: Direction = Direction.SENDRECV,
) -> SessionDescription:
    """Our offer for a call we originate (or an offerless INVITE): one audio stream.

    Codecs are offered on their static payload types (8 PCMA, 0 PCMU) in `codecs` order;
    telephone-event/8000 on `dtmf_pt` (a dynamic type, RFC 3551 §3), or none if None.
    """
    addrtype = _check_local(local_address, local_port, session_id, session_version)
    offered = _acceptable(codecs, "codecs")
    if dtmf_pt is not None and dtmf_pt not in _DYNAMIC_PAYLOAD_TYPES:
        raise ValueError(f"dtmf_pt must be a dynamic payload type 96-127: {dtmf_pt}")
    audio = _audio_line(
        media="audio",
        proto="RTP/AVP",
        port=local_port,
        codecs=[(codec.payload_type, codec) for codec in offered],
        dtmf_pt=dtmf_pt,
        direction=direction,
    )
    return _session(
        addrtype=addrtype,
        local_address=local_address,
        session_id=session_id,
        session_version=session_version,
        timings=(Timing(),),
        media=(audio,),
    )


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Read the remote's answer to our `offer`; SdpError(488) if it is unusable.

    The answer must keep the m= lines of the offer (RFC 3264 §6), accept our audio
    stream on the same transport, and name a codec we offered.
    """
    index = next(
        (
            i
            for i, media in enumerate(offer.media)
            if media.media.lower() == "audio" and media.port != 0
        ),
        None,
    )
    if index is None:
        raise ValueError("our offer has no active audio stream")
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)} (RFC 3264 §6)",
            status_hint=NOT_ACCEPTABLE_HERE,
        )
    ours = offer.media[index]
    theirs = answer.media[index]
    if theirs.media.lower() != ours.media.lower():
        raise SdpError(
            f"answer m= #{index + 1} is {theirs.media}, offer was {ours.media}",
            status_hint=NOT_ACCEPTABLE_HERE,
        )
    if theirs.port != 0 and theirs.proto.upper() != ours.proto.upper():
        raise SdpError(
            f"answer changed the transport {ours.proto} to {theirs.proto} (RFC 3264 §6)",
            status_hint=NOT_ACCEPTABLE_HERE,
        )
    offered = tuple(
        codec
        for payload_type in ours.payload_types
        if (codec := _codec_of(ours, payload_type)) is not None
    )
    if not offered:
        raise ValueError("our offer names no G.711 codec")
    secure = ours.proto.upper() == _SECURE_PROTO
    stream = _read_stream(answer, theirs, offered, None, secure=secure)
    if not isinstance(stream, _Stream):
        raise SdpError(f"answer m= #{index + 1}: {stream}", status_hint=NOT_ACCEPTABLE_HERE)
    ours_direction = offer.direction_for(ours)
    local_direction = Direction.from_flags(
        sends=ours_direction.sends and stream.direction.receives,
        receives=ours_direction.receives and stream.direction.sends,
    )
    return Negotiated(
        codec=stream.codec,
        payload_type=stream.payload_type,
        # Only if we offered telephone-event ourselves (RFC 3264 §6.1: answer ⊆ offer).
        dtmf_pt=stream.dtmf_pt if _telephone_event_pt(ours) is not None else None,
        remote_address=stream.address,
        remote_port=stream.port,
        ptime=stream.ptime,
        local_direction=local_direction,
        remote_direction=stream.direction,
        on_hold=ours_direction.sends and not stream.direction.receives,
        answer=None,
        media_index=index,
    )


# -- SDES-keyed SRTP on legs we offer (issue 11, `edge`) ---------------------------


def secure_offer(offer: SessionDescription, crypto: CryptoAttribute) -> SessionDescription:
    """`offer` (from `make_offer`) with its audio stream on RTP/SAVP and our
    `a=crypto` line (RFC 4568 §7.1.1): what an operator's softphone set to
    mandatory SRTP (baresip `mediaenc=srtp-mand`) accepts."""
    media = tuple(
        replace(
            m,
            proto=_SECURE_PROTO,
            attributes=(*m.attributes, Attribute(name="crypto", value=crypto.serialize())),
        )
        if m.media.lower() == "audio" and m.port != 0
        else m
        for m in offer.media
    )
    return replace(offer, media=media)


def answered_crypto(offer: SessionDescription, answer: SessionDescription) -> CryptoAttribute:
    """The answerer's key for our `secure_offer`: its `a=crypto` with our
    tag and suite (RFC 4568 §7.1.2); SdpError(488) when there is none."""
    ours = next(m for m in offer.media if m.proto.upper() == _SECURE_PROTO)
    index = offer.media.index(ours)
    mine = CryptoAttribute.parse(str(ours.attribute_values("crypto")[0]))
    if index >= len(answer.media):
        raise SdpError("answer has no secure audio stream", status_hint=NOT_ACCEPTABLE_HERE)
    for value in answer.media[index].attribute_values("crypto"):
        try:
            theirs = CryptoAttribute.parse(value or "")
        except SrtpError:
            continue
        if (theirs.tag, theirs.suite) == (mine.tag, mine.suite):
            return theirs
    raise SdpError(
        "answer accepts none of our SRTP keys (RFC 4568 §7.1.2)", status_hint=NOT_ACCEPTABLE_HERE
    )
