"""callflow/guards.py: the edge's rules where the call flow meets the outside (issue 11)."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from callcenter112.callflow.guards import (
    LegSrtp,
    SrtpMode,
    callback_target,
    leg_headers,
    recording_health_event,
    settle_recorder,
    unrecorded_file,
)
from callcenter112.incidents import LegRole
from callcenter112.media.g711 import Codec
from callcenter112.media.recorder import IncidentRecorder, RecordingDegraded, RecordingRecovered
from callcenter112.offer_answer import answer_offer, make_offer
from callcenter112.rtp.srtp import CryptoAttribute, SrtpContext
from callcenter112.sdp import Attribute, SdpError, SessionDescription

INTERNAL = [
    ("X-Incident-ID", "INC-1"),
    ("Call-Info", "<http://10.0.0.5/console?incident=INC-1>;purpose=info"),
    ("Subject", "112 fire"),
    ("Priority", "psap-callback"),
]


@pytest.mark.parametrize(
    ("role", "kept"),
    [
        (LegRole.OPERATOR, 4),
        (LegRole.SUPERVISOR, 4),
        (LegRole.AGENCY, 1),
        (LegRole.CALLBACK, 1),
    ],
)
def test_internal_headers_stay_inside(role: LegRole, kept: int) -> None:
    out = leg_headers(role, INTERNAL)
    assert len(out) == kept
    if kept == 1:
        assert out == [("Priority", "psap-callback")]


def test_callbacks_dial_only_indonesian_numbers() -> None:
    assert callback_target("081234567890") == "081234567890"
    assert callback_target("+6281234567890") == "081234567890"
    for bad in ("", "112", "sip:evil@example.com", "0812;x=1", "+14155550100", "٠٨١٢٣٤٥٦٧٨٩٠"):
        assert callback_target(bad) is None, bad


def test_a_call_id_never_reaches_a_path() -> None:
    name = unrecorded_file("../../etc/passwd\x00" + "x" * 70_000)
    assert "/" not in name and "\x00" not in name and "." not in name and len(name) < 64
    assert name == unrecorded_file("../../etc/passwd\x00" + "x" * 70_000)
    assert name != unrecorded_file("another")


def offer() -> SessionDescription:
    return make_offer(local_address="127.0.0.1", local_port=40000, session_id=1, session_version=1)


def answer_to(
    sdp: SessionDescription, *, crypto: str | None, proto: str = "RTP/AVP"
) -> SessionDescription:
    negotiated = answer_offer(
        SessionDescription.parse(sdp.serialize().replace(b"RTP/SAVP", b"RTP/AVP")),
        local_address="127.0.0.2",
        local_port=50000,
        session_id=2,
        session_version=1,
    )
    assert negotiated.answer is not None
    ans = negotiated.answer
    media = ans.media[0]
    attrs = (
        media.attributes
        if crypto is None
        else (*media.attributes, Attribute(name="crypto", value=crypto))
    )
    from dataclasses import replace

    return replace(ans, media=(replace(media, proto=proto, attributes=attrs),))


KEY = bytes(range(30))
THEIRS = CryptoAttribute.generate(tag=1, suite="AES_CM_128_HMAC_SHA1_80", key_and_salt=bytes(30))


def test_srtp_off_changes_nothing() -> None:
    srtp, out = LegSrtp.for_offer(SrtpMode.OFF, offer())
    assert out == offer() and srtp.local is None
    assert srtp.for_answer(out, answer_to(out, crypto=None)) is None


def test_mandatory_offers_savp_and_keys_from_the_answer() -> None:
    srtp, out = LegSrtp.for_offer(SrtpMode.MANDATORY, offer(), key_and_salt=KEY)
    assert out.media[0].proto == "RTP/SAVP"
    assert out.media[0].attribute_values("crypto") == (srtp.local.serialize(),)  # type: ignore[union-attr]
    ctx = srtp.for_answer(out, answer_to(out, crypto=THEIRS.serialize(), proto="RTP/SAVP"))
    assert isinstance(ctx, SrtpContext)
    with pytest.raises(SdpError) as err:
        srtp.for_answer(out, answer_to(out, crypto=None, proto="RTP/SAVP"))
    assert err.value.status_hint == 488


def test_optional_is_best_effort() -> None:
    srtp, out = LegSrtp.for_offer(SrtpMode.OPTIONAL, offer(), key_and_salt=KEY)
    assert out.media[0].proto == "RTP/AVP" and out.media[0].attribute_values("crypto")
    assert srtp.for_answer(out, answer_to(out, crypto=None)) is None  # plain RTP answered
    assert isinstance(srtp.for_answer(out, answer_to(out, crypto=THEIRS.serialize())), SrtpContext)
    with pytest.raises(SdpError):
        srtp.for_answer(out, answer_to(out, crypto=None, proto="RTP/SAVP"))


def test_each_offer_gets_its_own_key() -> None:
    a, _ = LegSrtp.for_offer(SrtpMode.MANDATORY, offer())
    b, _ = LegSrtp.for_offer(SrtpMode.MANDATORY, offer())
    assert (
        a.local is not None and b.local is not None and a.local.key_and_salt != b.local.key_and_salt
    )


def test_recording_health_events() -> None:
    p = Path("x.wav")
    assert recording_health_event(
        RecordingDegraded(path=p, error="No space", pending_bytes=16)
    ) == (
        "recording_degraded",
        {"error": "No space", "pending_bytes": 16},
    )
    assert recording_health_event(RecordingRecovered(path=p, dropped_bytes=0)) == (
        "recording_recovered",
        {"dropped_bytes": 0},
    )


class FullDisk:
    """A file whose appends fail until `free()` (ENOSPC), then go to the real file."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.full = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def append(self, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real.append(data)  # type: ignore[attr-defined]


async def test_settle_waits_for_held_audio_to_reach_the_disk(tmp_path: Path) -> None:
    rec = IncidentRecorder(tmp_path / "r.wav", codec=Codec.PCMA, start=0.0, fsync=False)
    rec.file = FullDisk(rec.file)  # type: ignore[assignment]
    rec._pending += b"\xd5" * 320
    rec.flush(0.1)
    assert rec.pending_bytes > 0 and rec.degraded
    assert not await settle_recorder(rec, within_s=0.1)  # still refused: gives up in time

    async def disk_frees() -> None:
        await asyncio.sleep(0.1)
        rec.file.full = False  # type: ignore[attr-defined]
        rec.flush(0.2)

    task = asyncio.create_task(disk_frees())
    assert await settle_recorder(rec, within_s=2.0)
    await task
    assert rec.pending_bytes == 0
    assert [type(c) for c in rec.take_health()] == [RecordingDegraded, RecordingRecovered]


class WatchedCentre:
    """The parts of the centre the low-disk alarm uses: a real config, events kept."""

    def __init__(self, base: Path, low_disk_mb: int) -> None:
        from callcenter112.config import parse_config

        (base / "recordings").mkdir()
        self.config = parse_config(
            {
                "sip": {"listen": "127.0.0.1:5070"},
                "trunk": [{"name": "t", "allow": ["192.0.2.0/24"], "numbers": ["112"]}],
                "storage": {
                    "database": "db.sqlite3",
                    "recordings": "recordings",
                    "low_disk_mb": low_disk_mb,
                },
            },
            base_dir=base,
        )
        self.stopping = False
        self.published: list[tuple[str, dict[str, object]]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def publish(self, kind: str, *, data: dict[str, object] | None = None, **_: object) -> None:
        self.published.append((kind, data or {}))

    def spawn_write(self, aw: object) -> None:
        self.tasks.append(asyncio.ensure_future(aw))  # type: ignore[arg-type]


async def test_low_disk_alarm_is_published_once_per_change(tmp_path: Path) -> None:
    from callcenter112.callflow.guards import start_disk_watch, storage_folders

    centre = WatchedCentre(tmp_path, low_disk_mb=10_000_000)  # 10 TB: surely low here
    assert storage_folders(centre.config) == [tmp_path, tmp_path / "recordings"]
    start_disk_watch(centre, every_s=0.05)  # type: ignore[arg-type]
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(centre.tasks) >= 3:
            break
    await asyncio.gather(*centre.tasks)
    centre.stopping = True
    kinds = [(k, d["folder"], d["low"]) for k, d in centre.published]
    # Both folders raised once, not again on the later checks.
    assert sorted(kinds) == [("low_disk", "recordings", True), ("low_disk", tmp_path.name, True)]
    assert all(d["free_bytes"] < d["threshold_bytes"] for _, d in centre.published)  # type: ignore[operator]
