"""End-to-end media (issue 3): the caller's audio is recorded and heard, keys arrive once.

The real server runs as a process on loopback; the peers are real: SIPp citizens replaying
SIPp's own captures (`g711a.pcap`: 7 s of A-law speech in 30 ms packets; `dtmf_2833_N.pcap`:
one RFC 4733 key press each), baresip as the operator's softphone (it dumps what it decodes
and what it encodes as WAV files) and once as a citizen pressing keys over its control socket.

Audio is compared the way an auditor would listen, not by trusting the code under test: both
sides are decoded to 16-bit PCM with `audioop` and a stretch of the reference is searched for
in the recording by normalised cross-correlation (coarse search at 2 kHz with
`audioop.findfit`, refined at 8 kHz; numpy is not a dependency). The recording is read by a
RIFF parser in this file, not by the recorder's own reader. Where the server keeps the bits
(the caller's channel is G.711 as received, DESIGN §5) the check is bit-exact as well.

No timed assertions: every wait is `wait_until` with a generous bound, and the expectations
are counts, correlations and positions relative to the incident's own event times.

The last tests (not marked `peers`) run the media glue — `MediaEngine`, `MediaLeg`, the RTP
port pool — on loopback sockets without SIP, for what a whole call cannot pin down exactly:
connected sending once the latch settles, relay timing across a change of source, RTCP
spread, pool exhaustion.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import socket
import struct
import time
import warnings
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callcenter112.media.g711 import Codec
from callcenter112.net.media import MediaEngine, MediaLeg
from callcenter112.net.rtp_transport import PortsExhausted, RtpSocketPool
from callcenter112.rtp.packet import RtpPacket
from callcenter112.rtp.session import LATCH_WINDOW_PACKETS
from harness import (
    PCAPS,
    SCENARIOS,
    SOUNDS,
    Baresip,
    Server,
    baresip_operator,
    free_port,
    free_range,
    need,
    operator_online,
    running_server,
    sipp_command,
    start_sipp_in,
    wait_until,
)
from pcaplib import read_udp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # gone in 3.13; audioop-lts provides it there (pyproject)

RATE = 8000  # G.711 (RFC 3551 §4.5.14)
PCMA = 8  # RFC 3551 static payload types
PCMU = 0
G711A = PCAPS / "g711a.pcap"
DTMF_KEYS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "pound")
MIN_CORRELATION = 0.9

# Short menus and no wrap-up, so each test's call is quick (the suite's wall time).
FAST = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 4
wrapup_s = 0
"""


# --------------------------------------------------------------------------- audio tools


@dataclass(frozen=True, slots=True)
class RtpPayload:
    seq: int
    timestamp: int
    payload_type: int
    payload: bytes


def pcap_rtp(path: Path) -> list[RtpPayload]:
    """The RTP packets of a capture, in capture order (plain headers, as SIPp's have)."""
    out = []
    for datagram in read_udp(path):
        data = datagram.payload
        if len(data) < 12 or data[0] >> 6 != 2:
            continue
        _, second, seq, ts, _ssrc = struct.unpack_from("!BBHII", data)
        out.append(RtpPayload(seq, ts, second & 0x7F, data[12:]))
    return out


def g711_to_pcm(payload_type: int, code_words: bytes) -> bytes:
    if payload_type == PCMA:
        return audioop.alaw2lin(code_words, 2)
    if payload_type == PCMU:
        return audioop.ulaw2lin(code_words, 2)
    raise AssertionError(f"not G.711: payload type {payload_type}")


def pcap_speech(path: Path) -> tuple[bytes, list[RtpPayload]]:
    """The capture's A-law audio laid out by RTP timestamp (gaps silent), as 16-bit PCM."""
    packets = [p for p in pcap_rtp(path) if p.payload_type == PCMA]
    first = packets[0].timestamp
    end = max(p.timestamp - first + len(p.payload) for p in packets)
    words = bytearray(b"\xd5" * end)  # A-law silence
    for p in packets:
        at = p.timestamp - first
        words[at : at + len(p.payload)] = p.payload
    return g711_to_pcm(PCMA, bytes(words)), packets


@dataclass(frozen=True, slots=True)
class Recording:
    """A stereo G.711 incident recording, parsed here (RIFF), not by the recorder."""

    format_tag: int  # 6 A-law, 7 µ-law
    left: bytes  # code words as recorded
    right: bytes

    @property
    def payload_type(self) -> int:
        return PCMA if self.format_tag == 6 else PCMU

    def pcm(self, channel: int) -> bytes:
        return g711_to_pcm(self.payload_type, self.right if channel else self.left)


def read_recording(path: Path) -> Recording:
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"{path}: not RIFF/WAVE"
    riff_size = struct.unpack_from("<I", data, 4)[0]
    assert riff_size == len(data) - 8, f"{path}: RIFF size {riff_size}, file {len(data)}"
    pos, fmt, audio = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body)
        elif chunk == b"data":
            audio = body
        pos += 8 + size + (size & 1)
    assert fmt is not None and audio is not None, f"{path}: no fmt or data chunk"
    tag, channels, rate, _byte_rate, block_align, bits = fmt
    assert (tag in (6, 7), channels, rate, block_align, bits) == (True, 2, RATE, 2, 8), fmt
    return Recording(format_tag=tag, left=audio[0::2], right=audio[1::2])


def read_pcm_wav(path: Path) -> bytes:
    """A 16-bit mono WAV (what baresip's sndfile module writes), resampled to 8 kHz."""
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth()) == (1, 2), path
        frames: bytes = f.readframes(f.getnframes())
        rate = f.getframerate()
    if rate != RATE:
        frames = bytes(audioop.ratecv(frames, 2, 1, rate, RATE, None)[0])
    return frames


@dataclass(frozen=True, slots=True)
class Match:
    lag: int  # sample offset of the needle's best alignment in the haystack
    correlation: float  # normalised cross-correlation there (1.0: identical up to gain)

    @property
    def seconds(self) -> float:
        return self.lag / RATE


def find_audio(needle: bytes, haystack: bytes, *, coarse: int = 4) -> Match:
    """Where 16-bit PCM `needle` best fits inside `haystack`, and how well.

    `audioop.findfit` maximises the correlation coefficient over every offset; run at
    8000/`coarse` Hz first, then at full rate in a small window around the coarse peak.
    """
    n, h = len(needle) // 2, len(haystack) // 2
    if n == 0 or h < n:
        return Match(0, 0.0)
    low_rate = RATE // coarse
    small_needle = audioop.ratecv(needle, 2, 1, RATE, low_rate, None)[0]
    small_hay = audioop.ratecv(haystack, 2, 1, RATE, low_rate, None)[0]
    small_needle = small_needle[: len(small_hay)]
    rough, _ = audioop.findfit(small_hay, small_needle)
    lo = max(0, min((rough - 2) * coarse, h - n))
    hi = max(lo, min(h - n, (rough + 2) * coarse))
    fine, _ = audioop.findfit(haystack[2 * lo : 2 * (hi + n)], needle)
    lag = lo + fine
    window = haystack[2 * lag : 2 * (lag + n)]
    rms_needle, rms_window = audioop.rms(needle, 2), audioop.rms(window, 2)
    if rms_needle == 0 or rms_window == 0:
        return Match(lag, 0.0)
    # findfactor = <w,n>/<n,n>; times |n|/|w| gives <w,n>/(|w||n|).
    factor = audioop.findfactor(window, needle)
    return Match(lag, factor * rms_needle / rms_window)


def packets_in_order(decoded: bytes, packets: list[RtpPayload]) -> int:
    """How many of `packets` (G.711 A-law) appear in the 16-bit PCM `decoded`, frame by
    frame, in their order: the decoder's output cut into packet-sized frames, each matched
    to the next packet with exactly those samples."""
    frames = [g711_to_pcm(PCMA, p.payload) for p in packets]
    size = len(frames[0])
    matched, j = 0, 0
    for start in range(0, len(decoded) - size + 1, size):
        frame = decoded[start : start + size]
        k = j
        while k < len(frames) and frames[k] != frame:
            k += 1
        if k < len(frames):
            matched += 1
            j = k + 1
    return matched


def seconds(pcm: bytes, start: float, end: float) -> bytes:
    return pcm[2 * round(start * RATE) : 2 * round(end * RATE)]


def prompt_pcm(name: str) -> bytes:
    """A shipped prompt (an 8 kHz G.711 WAV in sounds/) as 16-bit PCM."""
    data = (SOUNDS / name).read_bytes()
    assert data[:4] == b"RIFF", name
    pos, tag, audio = 12, 0, b""
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt ":
            tag = struct.unpack_from("<H", data, pos + 8)[0]
        elif chunk == b"data":
            audio = data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    assert tag in (6, 7), f"{name}: format {tag}"
    return g711_to_pcm(PCMA if tag == 6 else PCMU, audio)


# --------------------------------------------------------------------------- server tools


def incident_id_of(server: Server, caller: str) -> str | None:
    rows = server.sql("SELECT id FROM incidents WHERE caller = ? ORDER BY arrived_at DESC", caller)
    return str(rows[0][0]) if rows else None


def status_of(server: Server, incident_id: str) -> str:
    return str(server.sql("SELECT status FROM incidents WHERE id = ?", incident_id)[0][0])


def event_times(server: Server, incident_id: str, kind: str) -> list[float]:
    rows = server.sql(
        "SELECT at FROM events WHERE incident_id = ? AND kind = ? ORDER BY at", incident_id, kind
    )
    return [float(r[0]) for r in rows]


def sealed_recording(server: Server, incident_id: str) -> tuple[Path, float]:
    """The incident's sealed recording and the wall time its sample 0 stands for."""

    def sealed() -> list[tuple[Any, ...]]:
        return server.sql(
            "SELECT path, started_at FROM recordings WHERE incident_id = ? AND status = 'sealed'",
            incident_id,
        )

    rows = wait_until(sealed, 30, what=f"recording of {incident_id} sealed")
    path, started = rows[0]
    return server.recordings / path, float(started)


def digits_logged(server: Server, incident_id: str) -> list[tuple[str, str]]:
    """(digit, source) of every key the server recognised on this call, in order."""
    return [
        (e["digit"], e["source"])
        for e in server.events("digit")
        if e.get("incident_id") == incident_id
    ]


def render_caller(
    directory: Path,
    *,
    caller: str,
    media: list[Path],
    gap_ms: int = 600,
    pause_before_ms: int = 300,
    talk_ms: int = 500,
) -> Path:
    """tests/sipp/caller.xml.in with `gap_ms` after each pcap (the harness's
    `caller_scenario` fixes 600 ms; DTMF captures need less). The caller hangs up after
    `talk_ms`, or answers the centre's BYE if that comes first."""
    actions = "\n".join(
        f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
        f'  <pause milliseconds="{gap_ms}"/>'
        for pcap in media
    )
    text = (
        (SCENARIOS / "caller.xml.in")
        .read_text()
        .replace("@CALLER@", caller)
        .replace("@PAUSE_BEFORE_MS@", str(pause_before_ms))
        .replace("@MEDIA@", actions)
    )
    path = directory / "caller.xml"
    path.write_text(text.replace("@TALK_MS@", str(talk_ms)))
    return path


def run_caller(server: Server, directory: Path, scenario: Path, *, timeout: float = 90) -> None:
    run = start_sipp_in(directory, sipp_command(server.sip_port, scenario=str(scenario)))
    rc = run.wait(timeout)
    assert rc == 0, run.logs()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose operator is not on duty: callers stay in the IVR and the queue."""
    need("sipp")
    with running_server(tmp_path_factory.mktemp("centre"), extra=FAST) as server:
        yield server


@dataclass
class Desk:
    server: Server
    phone: Baresip


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A server with operator op1 on duty on a baresip softphone (auto-answer)."""
    need("sipp", "baresip", "sox")
    directory = tmp_path_factory.mktemp("desk")
    with (
        running_server(directory, extra=FAST) as server,
        baresip_operator(
            directory / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone,
    ):
        wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
        yield Desk(server, phone)


def new_dumps(phone: Baresip, before: set[Path], kind: str) -> list[Path]:
    return sorted(p for p in phone.record_dir.glob(f"dump-*-{kind}.wav") if p not in before)


# --------------------------------------------------------------------------- 1: recording


@pytest.mark.peers
def test_caller_speech_is_recorded_bit_exact_on_the_left(centre: Server, tmp_path: Path) -> None:
    """SIPp speaks g711a.pcap while the IVR plays: the left channel holds every packet's
    code words at its timestamp, and the right channel holds the greeting it heard."""
    caller = "0812000001"
    speech, packets = pcap_speech(G711A)
    scenario = render_caller(tmp_path, caller=caller, media=[G711A], talk_ms=6800)
    run_caller(centre, tmp_path, scenario)
    incident = wait_until(lambda: incident_id_of(centre, caller), 20, what="incident")
    wait_until(lambda: status_of(centre, incident) != "active", 30, what="call ended")
    path, _ = sealed_recording(centre, incident)
    rec = read_recording(path)
    left = rec.pcm(0)

    # Cross-correlation: 3 s from the middle of the speech, found in the left channel.
    match = find_audio(seconds(speech, 1.0, 4.0), left)
    assert match.correlation >= MIN_CORRELATION, match
    # Bit-exact: each packet's payload sits at its RTP timestamp relative to that match.
    origin = match.lag - RATE * 1
    assert origin >= 0, match
    first = packets[0].timestamp
    misplaced = [
        p.seq
        for p in packets
        if rec.left[origin + p.timestamp - first : origin + p.timestamp - first + len(p.payload)]
        != p.payload
    ]
    assert len(misplaced) <= len(packets) // 50, f"{len(misplaced)} packets not bit-exact"

    # The right channel is what the caller heard: the Indonesian greeting from the start.
    greeting = prompt_pcm("id/greeting.wav")
    heard = find_audio(seconds(greeting, 0.2, 1.7), seconds(rec.pcm(1), 0, 4))
    assert heard.correlation >= MIN_CORRELATION, heard


# --------------------------------------------------------------------------- 2: digits


@pytest.mark.peers
def test_each_rfc4733_capture_is_one_digit(centre: Server, tmp_path: Path) -> None:
    """Every dtmf_2833_N.pcap, replayed in its RTP timestamp order (one stream, as a phone
    sends it), is recognised as digit N exactly once: end-packet repeats are not digits."""
    caller = "0812000002"
    names = {"star": "*", "pound": "#"}
    captures = []
    for key in DTMF_KEYS:
        path = PCAPS / f"dtmf_2833_{key}.pcap"
        packets = pcap_rtp(path)
        assert len(packets) > 3 and {p.payload_type for p in packets} == {101}
        captures.append((packets[0].timestamp, names.get(key, key), path))
    captures.sort()
    scenario = render_caller(
        tmp_path, caller=caller, media=[c[2] for c in captures], gap_ms=300, talk_ms=300
    )
    run_caller(centre, tmp_path, scenario)
    incident = wait_until(lambda: incident_id_of(centre, caller), 20, what="incident")
    # The call is over, so every packet of it has been handled: nothing more can arrive.
    wait_until(lambda: status_of(centre, incident) != "active", 30, what="call ended")
    expected = [(digit, "rfc4733") for _, digit, _ in captures]
    assert digits_logged(centre, incident) == expected


def baresip_citizen(directory: Path, *, number: str) -> Baresip:
    """baresip as a citizen's phone: an account that never registers, dialling 112 on the
    trunk (127.0.0.0/8 is the test trunk's allow-list)."""
    phone = Baresip(directory, user=number, password="unused", server_port=5)
    (directory / "accounts").write_text(
        f"<sip:{number}@127.0.0.1>;regint=0;answermode=manual;audio_codecs=PCMA,PCMU\n"
    )
    return phone


@pytest.mark.peers
def test_baresip_keys_reach_the_server_once(centre: Server, tmp_path: Path) -> None:
    """baresip dials 112 and sends keys over its control socket (RFC 4733 telephone-events):
    the server sees each press exactly once, in order."""
    need("baresip")
    number = "0812000003"
    phone = baresip_citizen(tmp_path / "citizen", number=number)
    phone.start()
    try:
        phone.command("dial", f"sip:112@127.0.0.1:{centre.sip_port}")
        incident = wait_until(lambda: incident_id_of(centre, number), 20, what="incident")
        # Answered (200 sent, recording running) before the first key.
        wait_until(lambda: event_times(centre, incident, "recording_started"), 20, what="answer")
        keys = ["4", "7", "#", "0"]
        for n, key in enumerate(keys, 1):
            phone.command("sndcode", key)
            wait_until(
                lambda n=n: len(digits_logged(centre, incident)) >= n, 20, what=f"digit {key}"
            )
        phone.command("hangup")
        wait_until(lambda: status_of(centre, incident) != "active", 30, what="call ended")
    finally:
        phone.stop()
    assert digits_logged(centre, incident) == [(k, "rfc4733") for k in keys]


# --------------------------------------------------------------------------- 3: the bridge


@pytest.mark.peers
def test_operator_and_caller_hear_each_other(desk: Desk, tmp_path: Path) -> None:
    """Caller (SIPp, g711a.pcap) bridged to the operator (baresip): the operator decodes the
    caller's speech — every second of it, in order — and the right channel of the recording
    holds what the operator's phone encoded while they talked."""
    server, phone = desk.server, desk.phone
    caller = "0812000004"
    speech, packets = pcap_speech(G711A)
    dec_before = set(phone.record_dir.glob("*.wav"))
    press_1 = PCAPS / "dtmf_2833_1.pcap"
    scenario = render_caller(tmp_path, caller=caller, media=[press_1, G711A], talk_ms=6800)
    run_caller(server, tmp_path, scenario)
    incident = wait_until(lambda: incident_id_of(server, caller), 20, what="incident")
    wait_until(lambda: status_of(server, incident) != "active", 30, what="call ended")
    assert status_of(server, incident) == "completed"
    path, rec_start = sealed_recording(server, incident)
    (answered_at,) = event_times(server, incident, "operator_answered")

    # The server received every packet SIPp sent, without loss.
    legs = dict(server.sql("SELECT role, packets FROM call_legs WHERE incident_id = ?", incident))
    assert legs["caller"] == len(packets) + len(pcap_rtp(press_1)), legs

    # Caller -> operator: each 1 s stretch of the capture is found in what baresip decoded,
    # in order, about one second apart (its jitter buffer may shift a little, never drop).
    (decoded_path,) = new_dumps(phone, dec_before, "dec")
    decoded = read_pcm_wav(decoded_path)
    lags = []
    for second in range(1, 6):
        match = find_audio(seconds(speech, second, second + 1), decoded)
        assert match.correlation >= MIN_CORRELATION, (second, match)
        lags.append(match.seconds)
    steps = [b - a for a, b in itertools.pairwise(lags)]
    assert all(0.9 <= s <= 1.1 for s in steps), lags
    # Sharper: G.711 decoding is a fixed table, so baresip's decoder output is the capture's
    # packets, bit-exact and in order, one 30 ms frame each. Only the last few may be
    # missing (still in its jitter buffer at hang-up); a relay that dropped, reordered or
    # re-cut packets fails here.
    forwarded = packets_in_order(decoded, packets)
    assert forwarded >= len(packets) - 12, f"{forwarded} of {len(packets)} packets decoded"

    # Operator -> caller: the right channel after the answer holds baresip's encoded audio.
    (encoded_path,) = new_dumps(phone, dec_before, "enc")
    spoken = read_pcm_wav(encoded_path)
    right = read_recording(path).pcm(1)
    match = find_audio(seconds(spoken, 2.0, 4.0), right)
    assert match.correlation >= MIN_CORRELATION, match
    assert match.seconds >= answered_at - rec_start - 0.5, (match, answered_at - rec_start)


@pytest.mark.peers
def test_hold_plays_hold_music_to_the_caller(desk: Desk, tmp_path: Path) -> None:
    """The operator's phone holds (re-INVITE sendonly) and resumes: `hold`/`resume` events,
    the caller hears sounds/hold_music.wav in between, and the operator after it."""
    server, phone = desk.server, desk.phone
    caller = "0812000005"
    before = set(phone.record_dir.glob("*.wav"))
    scenario = render_caller(
        tmp_path, caller=caller, media=[PCAPS / "dtmf_2833_2.pcap"], talk_ms=60_000
    )
    run = start_sipp_in(tmp_path, sipp_command(server.sip_port, scenario=str(scenario)))
    try:
        incident = wait_until(lambda: incident_id_of(server, caller), 20, what="incident")
        wait_until(lambda: event_times(server, incident, "operator_answered"), 30, what="bridged")
        time.sleep(1.0)  # let the operator talk first (content for the recording)
        phone.command("hold")
        wait_until(lambda: event_times(server, incident, "hold"), 20, what="hold event")
        time.sleep(3.0)  # the caller listens to the hold music
        phone.command("resume")
        wait_until(lambda: event_times(server, incident, "resume"), 20, what="resume event")
        time.sleep(2.5)  # and to the operator again
        phone.command("hangup")  # the centre then hangs up on the caller (BYE)
        wait_until(lambda: status_of(server, incident) != "active", 30, what="call ended")
        assert run.wait(60) == 0, run.logs()
        assert status_of(server, incident) == "completed"
    finally:
        run.kill()
    path, rec_start = sealed_recording(server, incident)
    (held,) = event_times(server, incident, "hold")
    (resumed,) = event_times(server, incident, "resume")
    right = read_recording(path).pcm(1)

    # The hold music from its first frame, starting when the hold began.
    music = prompt_pcm("hold_music.wav")
    match = find_audio(seconds(music, 0.0, 1.5), right)
    assert match.correlation >= MIN_CORRELATION, match
    assert held - rec_start - 0.5 <= match.seconds <= resumed - rec_start, (
        match,
        held - rec_start,
        resumed - rec_start,
    )
    # After the resume the caller hears the operator's phone again.
    (encoded_path,) = new_dumps(phone, before, "enc")
    spoken = read_pcm_wav(encoded_path)
    after = seconds(right, resumed - rec_start + 0.5, resumed - rec_start + 2.0)
    back = find_audio(after, spoken)
    assert back.correlation >= MIN_CORRELATION, back


# --------------------------------------------------------------------------- 4: port pool


class SipCaller:
    """A minimal trunk-side UAC over UDP: INVITE with an SDP offer, ACK, BYE."""

    def __init__(self, server_port: int, number: str) -> None:
        self.server = ("127.0.0.1", server_port)
        self.number = number
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{secrets.token_hex(8)}@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.branch = ""
        self.to = f"<sip:112@127.0.0.1:{server_port}>"
        self.contact = f"sip:112@127.0.0.1:{server_port}"

    def _headers(self, method: str, cseq: int, to: str) -> str:
        return (
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={self.branch};rport\r\n"
            f"From: <sip:{self.number}@127.0.0.1:{self.port}>;tag={self.tag}\r\n"
            f"To: {to}\r\nCall-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.number}@127.0.0.1:{self.port}>\r\nMax-Forwards: 70\r\n"
        )

    def invite(self, rtp_port: int) -> None:
        self.branch = "z9hG4bK" + secrets.token_hex(8)
        sdp = (
            f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        )
        self._send(
            f"INVITE sip:112@127.0.0.1:{self.server[1]} SIP/2.0\r\n"
            + self._headers("INVITE", 1, self.to)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        )

    def _send(self, text: str) -> None:
        self.sock.sendto(text.encode(), self.server)

    def final_response(self, cseq_method: str, timeout: float = 20.0) -> tuple[int, str]:
        """The final response to our request `cseq_method` (provisional ones skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            if not text.startswith("SIP/2.0 "):
                continue  # a request from the server (OPTIONS...): not expected here
            status = int(text.split(" ", 2)[1])
            cseq = next(
                (line for line in text.split("\r\n") if line.lower().startswith("cseq:")), ""
            )
            if status >= 200 and cseq.split()[-1] == cseq_method:
                return status, text
        raise AssertionError(f"no final response to {cseq_method} in {timeout}s")

    @staticmethod
    def header(text: str, name: str) -> str | None:
        for line in text.split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def ack(self, status: int, response: str) -> None:
        to = self.header(response, "To") or self.to
        if status < 300:  # RFC 3261 §13.2.2.4: the ACK of a 2xx is its own transaction
            self.to = to
            contact = self.header(response, "Contact") or ""
            self.contact = contact.strip("<>").split(">")[0] or self.contact
            self.branch = "z9hG4bK" + secrets.token_hex(8)
            uri = self.contact
        else:  # §17.1.1.3: same branch as the INVITE
            uri = f"sip:112@127.0.0.1:{self.server[1]}"
        self._send(
            f"ACK {uri} SIP/2.0\r\n" + self._headers("ACK", 1, to) + "Content-Length: 0\r\n\r\n"
        )

    def bye(self) -> int:
        self.branch = "z9hG4bK" + secrets.token_hex(8)
        self._send(
            f"BYE {self.contact} SIP/2.0\r\n"
            + self._headers("BYE", 2, self.to)
            + "Content-Length: 0\r\n\r\n"
        )
        return self.final_response("BYE")[0]

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def small_pool_server(directory: Path, *, pairs: int, preopen: int) -> Iterator[Server]:
    """A server whose `[rtp] ports` holds `pairs` RTP/RTCP pairs, `preopen` of them opened
    at start (the harness's config fixes preopen = 8; this rewrites that line)."""

    class SmallPool(Server):
        def write_config(self) -> None:
            super().write_config()
            text = self.config_path.read_text()
            assert "preopen = 8\n" in text
            self.config_path.write_text(text.replace("preopen = 8\n", f"preopen = {preopen}\n"))

    server = SmallPool(
        directory, sip_port=free_port(), web_port=free_port(), rtp=free_range(pairs), extra=FAST
    )
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.kill()


@pytest.mark.peers
def test_rtp_port_exhaustion_answers_503_and_ports_come_back(tmp_path: Path) -> None:
    """Four RTP pairs (one pre-opened, the rest on demand): two callers are answered, the
    third gets 503 with Retry-After at once — never a hang — and a port freed by a hang-up
    serves the next caller."""
    # Four pairs: two for callers, two kept for op1's operator and agency legs (issue 11).
    with small_pool_server(tmp_path, pairs=4, preopen=1) as server:
        rtp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp_sink.bind(("127.0.0.1", 0))
        rtp_port = rtp_sink.getsockname()[1]
        callers = [SipCaller(server.sip_port, f"081300000{n}") for n in range(1, 5)]
        try:
            answered = []
            for caller in callers[:2]:
                caller.invite(rtp_port)
                status, response = caller.final_response("INVITE")
                caller.ack(status, response)
                assert status == 200, response
                answered.append(caller)
            third = callers[2]
            third.invite(rtp_port)
            status, response = third.final_response("INVITE")
            third.ack(status, response)
            assert status == 503, response
            assert (SipCaller.header(response, "Retry-After") or "").isdigit(), response

            # Hang up the first: its pair goes back to the pool and serves a new caller.
            assert answered[0].bye() == 200
            first = wait_until(lambda: incident_id_of(server, "0813000001"), 20)
            wait_until(lambda: status_of(server, first) != "active", 20, what="call 1 ended")
            fourth = callers[3]
            fourth.invite(rtp_port)
            status, response = fourth.final_response("INVITE")
            fourth.ack(status, response)
            assert status == 200, response
            assert answered[1].bye() == 200
            assert fourth.bye() == 200
        finally:
            for caller in callers:
                caller.close()
            rtp_sink.close()
        rejected = [e for e in server.events("call_rejected") if e.get("status") == 503]
        # Issue 11: refused before the pool runs dry, keeping op1's reserve.
        rejected += server.events("capacity_reached")
        assert len(rejected) == 1, rejected
        # Refused, yet not lost: an interrupted incident with a callback task.
        third_incident = wait_until(lambda: incident_id_of(server, "0813000003"), 20)
        assert status_of(server, third_incident) == "interrupted"


# --------------------------------------------------------------------------- 5: the engine
#
# The media glue (net/media.py, net/rtp_transport.py) on real loopback sockets, without
# SIP: what the end-to-end tests above cannot pin down exactly.


def rtp_packet(seq: int, ts: int, *, ssrc: int = 0x5EED, pt: int = PCMA) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFF_FFFF, ssrc) + bytes(160)


def udp_peer() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


async def until(condition: Any, what: str, rounds: int = 1000) -> None:
    """Let the loop deliver datagrams until `condition()`; bounded, never a timed check."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


@contextlib.asynccontextmanager
async def media_engine(pairs: int, preopen: int | None = None) -> AsyncIterator[MediaEngine]:
    pool = RtpSocketPool(
        "127.0.0.1", free_range(pairs), preopen=pairs if preopen is None else preopen
    )
    await pool.start()
    engine = MediaEngine(pool, cname_host="127.0.0.1")
    try:
        yield engine
    finally:
        engine.stop()
        await pool.close()


def configure(leg: MediaLeg, peer: socket.socket) -> None:
    leg.configure(codec=Codec.PCMA, payload_type=PCMA, dtmf_pt=101, remote=peer.getsockname())


async def test_leg_sends_on_a_connected_socket_once_its_latch_settles() -> None:
    """While the latch learns, packets go out with sendto; once its window closes the RTP
    socket is connected to the peer (the kernel then drops strangers, as the latch would);
    a re-INVITE and the release to the pool dissolve the association."""
    peer, stranger = udp_peer(), udp_peer()
    async with media_engine(1) as engine:
        leg = await engine.open_leg("caller")
        configure(leg, peer)
        here = ("127.0.0.1", leg.local_port)
        for seq in range(LATCH_WINDOW_PACKETS):  # the window closes after this many
            peer.sendto(rtp_packet(seq, 160 * seq), here)
        await until(lambda: leg.incoming.packets == LATCH_WINDOW_PACKETS, "peer heard")
        assert leg.port.connected is None
        leg.send_frame(b"\xd5" * 160)  # learning is over: this send settles the route
        assert leg.port.connected == peer.getsockname()
        leg.send_frame(b"\xd5" * 160)
        first, second = (RtpPacket.parse(peer.recv(2048)) for _ in range(2))
        assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
        assert second.timestamp == first.timestamp + 160

        # A stranger's packet is not even delivered now; the peer's next one is.
        stranger.sendto(rtp_packet(0, 0, ssrc=0xBAD), here)
        peer.sendto(rtp_packet(LATCH_WINDOW_PACKETS, 0), here)
        await until(lambda: leg.incoming.packets == LATCH_WINDOW_PACKETS + 1, "peer again")
        assert leg.latch is not None and leg.latch.ignored == 0

        # A re-INVITE re-opens the latch: everyone is heard (and judged) again.
        configure(leg, peer)
        assert leg.port.connected is None
        stranger.sendto(rtp_packet(1, 160, ssrc=0xBAD), here)
        await until(lambda: leg.latch is not None and leg.latch.ignored == 1, "stranger")

        # Settled again, then released: the pair goes back to the pool unconnected.
        leg.latch.enabled = False  # closes the window at once
        leg.send_frame(b"\xd5" * 160)
        port = leg.port
        assert port.connected == peer.getsockname()
        leg.close()
        assert port.connected is None
        assert engine.pool.try_acquire() is port
    peer.close()
    stranger.close()


async def test_relay_keeps_gaps_and_the_silence_before_a_new_source() -> None:
    """Relayed packets keep their source's timing: a lost packet stays a gap, and when the
    source changes after a silence our timestamp jumps by the time that really passed."""
    caller_phone, operator_phone = udp_peer(), udp_peer()
    async with media_engine(2) as engine:
        caller = await engine.open_leg("caller")
        operator = await engine.open_leg("operator")
        configure(caller, caller_phone)
        configure(operator, operator_phone)
        now = [1000.0]
        caller._time = operator._time = lambda: now[0]  # the legs' clock, driven here
        caller.relay_with(operator)
        source = operator_phone.getsockname()
        arrivals = [(0.02, 1, 0), (0.02, 1, 160), (0.02, 1, 320)]
        arrivals += [(0.04, 1, 640)]  # the packet of ts 480 was lost
        arrivals += [(1.0, 2, 777_000)]  # 1 s of silence, then another SSRC, its own clock
        for seq, (step, ssrc, ts) in enumerate(arrivals):
            now[0] += step
            operator._on_rtp(rtp_packet(seq, ts, ssrc=ssrc), source)
        heard = [RtpPacket.parse(caller_phone.recv(2048)) for _ in arrivals]
    steps = [(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(heard)]
    assert steps == [160, 160, 320, 8000]
    assert [p.marker for p in heard] == [True, False, False, True, True]
    assert len({p.ssrc for p in heard}) == 1  # one outgoing stream throughout
    caller_phone.close()
    operator_phone.close()


async def test_rtcp_reports_are_spread_over_the_interval() -> None:
    """Each leg reports about every 5 s at its own randomised moment (RFC 3550 §6.3.1), so
    the reports of many legs started together do not go out in one burst."""
    sink = udp_peer()
    legs = 40
    async with media_engine(legs) as engine:
        for n in range(legs):
            configure(await engine.open_leg(f"leg{n}"), sink)
        engine._random.seed(112)
        engine._send_rtcp(0.0)  # schedules every leg's first report, sends none
        reports: dict[MediaLeg, list[float]] = {leg: [] for leg in engine.legs}
        per_scan = []
        for scan in range(1, 61):  # 15 s in housekeeping steps of RTCP_SCAN_S
            now = scan * 0.25
            due = {leg: leg.rtcp_due for leg in engine.legs}
            engine._send_rtcp(now)
            sent = [leg for leg in engine.legs if leg.rtcp_due != due[leg]]
            for leg in sent:
                reports[leg].append(now)
            per_scan.append(len(sent))
    assert max(per_scan) <= legs // 4, per_scan
    for times in reports.values():
        assert times and times[0] <= 7.5
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(2.5 <= g <= 7.75 for g in gaps), gaps
    sink.close()


async def test_port_pool_exhausts_at_once_and_reuses_released_pairs() -> None:
    """Two pairs, one pre-opened: the second is opened on demand, the third request fails
    at once with PortsExhausted (the caller gets 503), a released pair serves again."""
    pool = RtpSocketPool("127.0.0.1", free_range(2), preopen=1)
    await pool.start()
    try:
        assert pool.opened == 1
        first = await pool.acquire()
        second = await pool.acquire()
        assert pool.opened == 2 and pool.in_use == 2 and first is not second
        with pytest.raises(PortsExhausted):
            await asyncio.wait_for(pool.acquire(), 30)  # a bound on a hang, not a timing
        pool.release(first)
        assert await pool.acquire() is first
    finally:
        await pool.close()
