"""callflow/location.py on its own, over a real SQLite store: the sink, the call's
location work after the answer, and the agency INVITE's body (issue 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from callcenter112.callflow.location import (
    CallLocation,
    StoreLocationSink,
    agency_location,
    best_fix,
)
from callcenter112.config import parse_config
from callcenter112.location.fix import Fix
from callcenter112.location.invite import LocationReport
from callcenter112.records import open_store
from callcenter112.sip.multipart import split_body

T0 = 1_765_000_000.0
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
GOOD = Fix.position(lat=-3.6954, lon=128.1814, radius_m=40.0, source="pidf", at=T0, shape="Circle")
BAD = Fix.invalid(source="pidf", at=T0 + 1, reason="latitude 91 outside -90..90")


class Timeline:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def event(self, kind: str, detail: Any = None) -> bool:
        self.events.append((kind, detail))
        return True


async def test_sink_keeps_the_fix_then_publishes(tmp_path: Path) -> None:
    published: list[tuple[str, str]] = []
    async with open_store(tmp_path / "db.sqlite3") as store:
        iid = await store.create_incident(caller="081234567890", arrived_at=T0)
        sink = StoreLocationSink(store, publish=lambda k, i: published.append((k, i)), window_s=600)
        await sink.save(GOOD, caller="+6281234567890", incident_id=iid, received_at=T0)
        assert [f.caller for f in await store.fixes_for(iid)] == ["+6281234567890"]
        assert published == [("location_changed", iid)]
        # Pending (no incident): kept, nobody told; claimed within the window only.
        await sink.save(GOOD, caller="+6281111111111", incident_id=None, received_at=T0 - 700)
        assert published == [("location_changed", iid)]
        assert await sink.claim(iid, "+6281111111111", now=T0) == 0


async def test_attach_claims_keeps_and_writes_the_timeline(tmp_path: Path) -> None:
    config = parse_config({}, source="t")
    async with open_store(tmp_path / "db.sqlite3") as store:
        sink = StoreLocationSink(store, window_s=600)
        early = GOOD.with_caller("+6281234567890")
        await store.add_fix(early, incident_id=None, received_at=T0 - 10)
        iid = await store.create_incident(caller="081234567890", arrived_at=T0)
        report = LocationReport(fixes=(BAD,), notes=("body part text/plain ignored",))
        work = CallLocation(
            report=report, caller="+6281234567890", sink=sink, config=config, host="127.0.0.1"
        )
        timeline = Timeline()
        await work.attach(iid, timeline, now=T0)
        for _ in range(50):  # the INVITE's fixes are written as tasks of their own
            if len(await store.fixes_for(iid)) == 2:
                break
            await asyncio.sleep(0.02)
        assert [f.valid for f in await store.fixes_for(iid)] == [True, False]
        kinds = dict(timeline.events)
        assert kinds["location_received"]["claimed_aml"] == 1
        assert kinds["location_received"]["invalid"] == ["latitude 91 outside -90..90"]
        assert kinds["location_notes"] == {"notes": ["body part text/plain ignored"]}
        # The agency INVITE: the SDP and the best fix by value.
        headers: list[tuple[str, str]] = []
        body, content_type = await work.agency_body(SDP, headers, iid)
        assert content_type.startswith("multipart/mixed")
        assert dict(headers) == {
            "Geolocation": f"<cid:{iid}@127.0.0.1>",
            "Geolocation-Routing": "no",
        }
        split = split_body(content_type, body)
        assert split.sdp == SDP
        assert b"<gml:pos>-3.6954 128.1814</gml:pos>" in body
        # No incident (store down at arrival): plain SDP, headers untouched.
        assert await work.agency_body(SDP, headers, None) == (SDP, "application/sdp")


def test_no_valid_fix_means_plain_sdp() -> None:
    assert best_fix([BAD]) is None
    assert agency_location(SDP, [BAD], caller="+62812", incident_id="x", host="h") is None
    newer = Fix.position(lat=-3.7, lon=128.2, radius_m=None, source="operator", at=T0 + 5)
    assert best_fix([GOOD, BAD, newer]) is newer
