"""The call flow driven end to end over a fake wire and a fake clock (issue 10).

Each test runs the real `Centre`, desk/ACD, hand-off and journal on a real
SQLite store (tests/callflow_harness.py); only the SIP transport and the
clock are fakes. No test here waits for a real timer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from callcenter112.callflow.phases import Phase
from callcenter112.incidents import Incident, RecordingStatus, Status
from callcenter112.net.media import MediaLeg
from callcenter112.rtp.srtp import CryptoAttribute, SrtpContext
from callcenter112.sdp import SessionDescription
from callcenter112.sip.message import Request, Response
from callflow_harness import PROXY, Caller, CallflowHarness, Phone, sdp_offer
from harness import Operator


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[CallflowHarness]:
    harness = await CallflowHarness.open(tmp_path, operators=[Operator("op1", "secret1")])
    try:
        yield harness
    finally:
        await harness.close()


async def test_a_call_is_answered_queued_offered_talked_and_ended(h: CallflowHarness) -> None:
    op = Phone(h, "op1", "secret1")
    await op.register()
    caller = Caller(h)
    await caller.answered()
    call = h.call()
    assert call.phase is Phase.IVR
    await caller.digit("1")
    await h.until(lambda: op.ringing() is not None)
    invite = op.ringing()
    assert invite is not None
    await op.answer(invite, 180)
    await op.answer(invite)
    assert call.phase is Phase.TALKING
    await h.advance(2.0)
    await caller.bye()
    await h.settle()
    assert call.done
    assert h.leaks() == (0, 0)
    assert op.dialog_requests("BYE"), "the operator's leg is hung up"


async def talking(h: CallflowHarness) -> tuple[Caller, Phone, Request]:
    op = Phone(h, "op1", "secret1")
    await op.register()
    caller = Caller(h)
    await caller.answered()
    await caller.digit("1")
    await h.until(lambda: op.ringing() is not None)
    invite = op.ringing()
    assert invite is not None
    await pick_up(op, invite)
    assert h.call().phase is Phase.TALKING
    return caller, op, invite


SUITE = "AES_CM_128_HMAC_SHA1_80"


async def pick_up(phone: Phone, invite: Request) -> SrtpContext | None:
    """`phone` answers `invite`: plain RTP to a plain offer; to an SDES-keyed
    RTP/SAVP offer (issue 11) its own key under our tag (RFC 4568 §7.1.2).
    Returns the phone's SRTP context, if any."""
    offer = SessionDescription.parse(invite.body)
    (audio,) = [m for m in offer.media if m.media == "audio"]
    if audio.proto != "RTP/SAVP":
        assert not audio.attribute_values("crypto"), invite.body
        await phone.answer(invite)
        return None
    (ours,) = audio.attribute_values("crypto")
    centre_key = CryptoAttribute.parse(str(ours))
    key = CryptoAttribute.generate(tag=centre_key.tag, suite=SUITE, key_and_salt=os.urandom(30))
    body = (
        "v=0\r\no=- 4711 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {phone.rtp_port} RTP/SAVP 8 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=crypto:{key.serialize()}\r\na=sendrecv\r\n"
    ).encode()
    await phone.answer(invite, body=body)
    return SrtpContext(local=key, remote=centre_key)


def assert_srtp(h: CallflowHarness, leg: MediaLeg, phone: SrtpContext | None) -> None:
    """A leg to a phone on mandatory SRTP carries the keys of the offer and the
    phone's answer (what either side protects, the other unprotects); else plain."""
    secure = any(o.srtp == "mandatory" for o in h.config.operator)
    assert (phone is not None) is secure, "an SRTP phone gets an SDES-keyed offer"
    if phone is None:
        assert leg.srtp is None
        return
    assert leg.srtp is not None, "the leg's media is plain RTP"
    packet = bytes([0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0x12, 0x34]) + bytes(160)
    assert leg.srtp.unprotect(phone.protect(packet)) == packet
    assert phone.unprotect(leg.srtp.protect(packet)) == packet


async def incident(h: CallflowHarness) -> Incident:
    (incident_id,) = h.incident_ids
    record = await h.store.get_incident(incident_id)
    assert record is not None
    return record.incident


async def test_the_ended_call_leaves_a_closed_incident_and_a_sealed_recording(
    h: CallflowHarness,
) -> None:
    caller, _, _ = await talking(h)
    await h.advance(1.0)
    await caller.bye()
    assert await h.check_ended() == []
    inc = await incident(h)
    assert inc.status is Status.COMPLETED
    record = await h.store.get_incident(inc.id)
    assert record is not None and record.recordings
    assert {r.status for r in record.recordings} == {RecordingStatus.SEALED}


async def test_a_caller_who_hangs_up_in_the_ivr_is_abandoned(h: CallflowHarness) -> None:
    caller = Caller(h)
    await caller.answered()
    await h.advance(0.5)
    await caller.bye()
    assert await h.check_ended() == []
    assert (await incident(h)).status is Status.ABANDONED


async def test_the_operator_hanging_up_ends_the_call_for_the_caller(h: CallflowHarness) -> None:
    caller, op, invite = await talking(h)
    await op.request_in(invite, "BYE", 1)
    assert len(caller.byes()) == 1
    await caller.answer_requests()
    assert await h.check_ended() == []
    assert (await incident(h)).status is Status.COMPLETED


async def test_a_dead_operator_phone_sends_the_caller_back_to_the_queue(h: CallflowHarness) -> None:
    caller, op, _ = await talking(h)
    call = h.call()
    for _ in range(60):
        if call.phase is Phase.QUEUE:
            break
        await h.advance(1.0)
        await caller.answer_requests()  # the caller's side answers its OPTIONS probe
    assert call.phase is Phase.QUEUE
    assert call.operator_leg is None
    assert op.dialog_requests("OPTIONS"), "the silent phone was probed first"
    record = await h.store.get_incident(h.incident_ids[0])
    assert record is not None
    assert any(e.kind == "operator_lost" for e in record.events)
    await caller.bye()
    assert await h.check_ended() == []


async def test_operator_refuses_the_offer_and_the_call_stays_queued(h: CallflowHarness) -> None:
    op = Phone(h, "op1", "secret1")
    await op.register()
    caller = Caller(h)
    await caller.answered()
    await caller.digit("1")
    await h.until(lambda: op.ringing() is not None)
    invite = op.ringing()
    assert invite is not None
    await op.answer(invite, 486)
    call = h.call()
    assert call.phase is Phase.QUEUE and not call.offers
    await caller.bye()
    assert await h.check_ended() == []
    assert (await incident(h)).status is Status.ABANDONED


async def test_operator_puts_the_caller_on_hold_and_takes_them_back(h: CallflowHarness) -> None:
    caller, op, invite = await talking(h)
    await op.request_in(
        invite, "INVITE", 2, body=sdp_offer(op.rtp_port, direction="sendonly", version=2)
    )
    call = h.call()
    assert call.phase is Phase.HOLD
    await op.request_in(invite, "INVITE", 3, body=sdp_offer(op.rtp_port, version=3))
    assert call.phase is Phase.TALKING
    await caller.bye()
    assert await h.check_ended() == []


async def test_a_store_that_fails_mid_call_does_not_lose_the_caller(
    h: CallflowHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller, _, _ = await talking(h)

    async def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(h.store, "add_event", broken)
    await h.advance(1.0)
    await caller.bye()
    bye_answers = [r for r in caller.responses() if r.cseq.method == "BYE"]
    assert [r.status for r in bye_answers] == [200]
    assert not h.centre.active and h.leaks() == (0, 0)


@pytest.fixture
async def hx(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[CallflowHarness]:
    """With an agency behind the trunk's proxy and a supervisor's phone; an
    indirect parameter sets both phones' [[operator]] srtp (default off)."""
    srtp = getattr(request, "param", "off")
    harness = await CallflowHarness.open(
        tmp_path,
        operators=[
            Operator("op1", "secret1", srtp=srtp),
            Operator("sup1", "secret2", takes_calls=False, srtp=srtp),
        ],
        agencies=[("fire", "113")],
        supervisor_phone="sup1",
    )
    try:
        yield harness
    finally:
        await harness.close()


async def command(h: CallflowHarness, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(coro)
    await h.settle()
    await h.advance(0.1)
    return task


async def test_blind_transfer_bridges_the_caller_to_the_agency(hx: CallflowHarness) -> None:
    h = hx
    caller, op, _ = await talking(h)
    agency = Phone(h, "fire", port=PROXY.port, rtp_port=42000)
    (incident_id,) = h.incident_ids
    task = await command(h, h.centre.transfer(incident_id, "fire", mode="blind", actor="op1"))
    assert h.call().phase is Phase.TRANSFER
    invite = agency.ringing()
    assert invite is not None and "113" in invite.uri
    await agency.answer(invite)
    await h.advance(0.5)
    await task
    assert op.dialog_requests("BYE"), "the operator is released"
    await caller.bye()
    await agency.answer_requests()
    assert await h.check_ended() == []
    inc = await incident(h)
    assert inc.status is Status.COMPLETED and inc.transferred_at is not None


async def test_a_busy_agency_leaves_the_caller_with_the_operator(hx: CallflowHarness) -> None:
    h = hx
    caller, op, _ = await talking(h)
    agency = Phone(h, "fire", port=PROXY.port, rtp_port=42000)
    (incident_id,) = h.incident_ids
    task = await command(h, h.centre.transfer(incident_id, "fire", mode="blind", actor="op1"))
    invite = agency.ringing()
    assert invite is not None
    await agency.answer(invite, 486)
    await task
    call = h.call()
    # "The agency could not be reached" plays, then the operator has the caller back.
    await h.until(lambda: call.phase is Phase.TALKING, within_s=30)
    assert call.phase is Phase.TALKING and call.operator_leg is not None
    assert not op.dialog_requests("BYE")
    record = await h.store.get_incident(incident_id)
    assert record is not None
    assert any(e.kind == "transfer_failed" for e in record.events), [e.kind for e in record.events]
    await caller.bye()
    await op.answer_requests()
    assert await h.check_ended() == []


async def test_conference_then_the_operator_leaves(hx: CallflowHarness) -> None:
    h = hx
    caller, op, _ = await talking(h)
    agency = Phone(h, "fire", port=PROXY.port, rtp_port=42000)
    (incident_id,) = h.incident_ids
    task = await command(h, h.centre.transfer(incident_id, "fire", mode="conference", actor="op1"))
    invite = agency.ringing()
    assert invite is not None
    await agency.answer(invite)
    await h.advance(0.5)
    await task
    call = h.call()
    assert call.phase is Phase.CONFERENCE
    leave = await command(h, h.centre.leave_conference(incident_id, actor="op1"))
    await leave
    assert op.dialog_requests("BYE")
    await caller.bye()
    await agency.answer_requests()
    assert await h.check_ended() == []


@pytest.mark.parametrize("hx", ["off", "mandatory"], indirect=True)
@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
async def test_a_supervisor_joins_and_leaves(hx: CallflowHarness, mode: str) -> None:
    h = hx
    sup = Phone(h, "sup1", "secret2", port=5085, rtp_port=43000)
    await sup.register()
    caller, op, _ = await talking(h)
    (incident_id,) = h.incident_ids
    task = await command(
        h, h.centre.supervise(incident_id, supervisor="supervisor", mode=mode, actor="supervisor")
    )
    invite = sup.ringing()
    assert invite is not None
    phone = await pick_up(sup, invite)
    await h.advance(0.5)
    await task
    call = h.call()
    assert call.phase is Phase.TALKING
    (leg,) = [leg for leg in call.other_legs if leg.name == "supervisor"]
    assert leg.state == "answered"
    assert_srtp(h, leg.media, phone)  # issue 11: per the supervisor phone's srtp
    stop = await command(
        h, h.centre.stop_supervision(incident_id, supervisor="supervisor", actor="supervisor")
    )
    await stop
    assert sup.dialog_requests("BYE")
    audits = await h.store.list_audit()
    assert any("supervis" in a.action for a in audits), [a.action for a in audits]
    await caller.bye()
    await op.answer_requests()
    assert await h.check_ended() == []


@pytest.mark.parametrize("hx", ["off", "mandatory"], indirect=True)
async def test_a_callback_rings_the_operator_then_the_citizen_and_records_it(
    hx: CallflowHarness,
) -> None:
    h = hx
    op = Phone(h, "op1", "secret1")
    await op.register()
    caller = Caller(h, number="081234567890")  # callbacks dial Indonesian numbers only
    await caller.answered()
    await caller.bye()  # hung up in the IVR: abandoned, a callback task opens
    (incident_id,) = h.incident_ids
    (cb,) = await h.store.list_callbacks(open_only=True)
    assert cb.incident_id == incident_id
    task = await command(h, h.centre.start_callback(cb.id, operator="op1", actor="op1"))
    await task
    ring = op.ringing()
    assert ring is not None
    phone = await pick_up(op, ring)
    (op_media,) = [m for m in h.media.legs if m.label == f"callback-{cb.id}/operator"]
    assert_srtp(h, op_media, phone)  # issue 11: per the operator phone's srtp
    citizen = Phone(h, "citizen", port=PROXY.port, rtp_port=42000)
    dialled = citizen.ringing()
    assert dialled is not None and "081234567890" in dialled.uri
    assert b"a=crypto" not in dialled.body, "no key goes to the carrier"
    assert dialled.headers.get("Priority") == "psap-callback"
    await citizen.answer(dialled)
    await h.advance(1.0)
    await citizen.request_in(dialled, "BYE", 1)
    await op.answer_requests()
    await h.advance(1.0)
    assert op.dialog_requests("BYE"), "the operator's leg ends with the citizen's"
    assert await h.check_ended() == []
    record = await h.store.get_incident(incident_id)
    assert record is not None
    assert len(record.recordings) == 2  # the call's and the callback's
    (done,) = record.callbacks
    assert done.attempts, "the attempt is kept"


@pytest.mark.parametrize("where", ["ivr", "queue", "talking"])
async def test_a_crash_mid_phase_leaves_an_interrupted_incident_and_no_open_recording(
    h: CallflowHarness, where: str
) -> None:
    if where == "talking":
        await talking(h)
    else:
        caller = Caller(h)
        await caller.answered()
        if where == "queue":
            await caller.digit("1")  # no operator registered: it waits in the queue
            assert h.call().phase is Phase.QUEUE
    await h.advance(1.0)
    (incident_id,) = h.incident_ids
    report = await h.crash_and_recover()
    assert report.interrupted == (incident_id,)
    record = await h.store.get_incident(incident_id)
    assert record is not None
    assert record.incident.status is Status.INTERRUPTED
    assert record.recordings
    assert {r.status for r in record.recordings} <= {RecordingStatus.SEALED, RecordingStatus.LOST}
    assert not [leg for leg in record.legs if leg.is_open]  # closed, end time unknown
    assert record.callbacks, "an interrupted emergency is called back"


async def test_a_refer_from_the_operator_phone_transfers_and_notifies(hx: CallflowHarness) -> None:
    h = hx
    caller, op, invite = await talking(h)
    agency = Phone(h, "fire", port=PROXY.port, rtp_port=42000)
    mark = len(h.wire.sent)
    await op.request_in(invite, "REFER", 2, extra=[("Refer-To", "<sip:113@127.0.0.1>")])
    answers = [m for m in h.wire.to(op.peer, since=mark) if isinstance(m, Response)]
    assert [r.status for r in answers] == [202]
    ring = agency.ringing()
    assert ring is not None
    await agency.answer(ring)
    await h.advance(0.5)
    # one NOTIFY per CSeq (the unanswered ones are retransmitted over UDP)
    notifies = list({n.cseq.sequence: n for n in op.dialog_requests("NOTIFY")}.values())
    assert [n.body for n in notifies] == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n"]
    assert (notifies[-1].headers.get("Subscription-State") or "").startswith("terminated")
    assert all(n.headers.get("Event") == "refer;id=2" for n in notifies)
    await op.answer_requests()
    await caller.bye()
    await agency.answer_requests()
    assert await h.check_ended() == []


async def test_a_refer_to_an_unknown_target_is_refused_and_the_call_goes_on(
    hx: CallflowHarness,
) -> None:
    h = hx
    caller, op, invite = await talking(h)
    mark = len(h.wire.sent)
    await op.request_in(invite, "REFER", 2, extra=[("Refer-To", "<sip:999@127.0.0.1>")])
    answers = [m for m in h.wire.to(op.peer, since=mark) if isinstance(m, Response)]
    assert [r.status for r in answers] == [403]
    assert h.call().phase is Phase.TALKING
    await caller.bye()
    await op.answer_requests()
    assert await h.check_ended() == []


async def test_the_live_snapshot_carries_the_raised_low_disk_alarms(h: CallflowHarness) -> None:
    """Issue 11: what the wallboard's low-disk banner shows is the centre's
    disk watch: raised folders while they are low, nothing once cleared."""
    from callcenter112.faults import DiskWatch

    assert h.centre.snapshot().low_disk == ()
    free = {"data": 10**12, "recordings": 10**12}
    h.centre.disk_watch = DiskWatch(
        [h.directory / "data", h.directory / "recordings"],
        threshold_bytes=10**9,
        measure=lambda folder: free[folder.name],
    )
    h.centre.disk_watch.check()
    assert h.centre.snapshot().low_disk == ()
    free["recordings"] = 10**8
    h.centre.disk_watch.check()
    assert h.centre.snapshot().low_disk == ("recordings",)
    free["recordings"] = 10**12
    h.centre.disk_watch.check()
    assert h.centre.snapshot().low_disk == ()


@pytest.mark.parametrize("t1_ms", [500, 100])
async def test_an_unacknowledged_answer_is_given_up_after_64_t1(tmp_path: Path, t1_ms: int) -> None:
    """RFC 3261 §13.3.1.4: the 200 to the caller's INVITE is retransmitted until
    its ACK comes, and the call is given up after 64*T1 — T1 from
    `sip.timer_t1_ms` (32 s by default, 6.4 s with 100 ms)."""
    h = await CallflowHarness.open(
        tmp_path, operators=[Operator("op1", "secret1")], sip_extra=f"timer_t1_ms = {t1_ms}"
    )
    try:
        caller = Caller(h)
        await caller.dial()
        final = caller.final()
        assert final is not None and final.status == 200, caller.responses()
        give_up_s = 64 * t1_ms / 1000
        await h.advance(give_up_s - 0.5)
        # Still retransmitting the 200 (T1, 2*T1, … capped at T2), not given up.
        oks = [r for r in caller.responses() if r.status == 200 and r.cseq.method == "INVITE"]
        assert len(oks) >= 3, len(oks)
        incident = h.call().incident_id
        assert incident is not None
        assert (await h.store.get_incident(incident)).incident.status is Status.ACTIVE
        await h.advance(1.0)
        await h.settle()
        record = await h.store.get_incident(incident)
        assert record.incident.status is Status.INTERRUPTED, record.incident.status
    finally:
        await h.close()
