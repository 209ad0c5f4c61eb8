"""The store keeps caller-location fixes (issue 13) on both engines: per incident,
pending by caller and claimed by the caller's next incident, shown in the incident JSON."""

from __future__ import annotations

from typing import Any

import pytest

from callcenter112.incidents import incident_to_json
from callcenter112.location.fix import Fix

pytest_plugins = ("pg_support", "store_engines")

T0 = 1_765_000_000.0


async def test_fixes_are_kept_per_incident_and_shown(store: Any) -> None:
    iid = await store.create_incident(caller="+6281234567890", arrived_at=T0)
    good = Fix.position(
        lat=-3.6954,
        lon=128.1814,
        radius_m=25.0,
        source="pidf",
        at=T0 + 1,
        shape="Circle",
        confidence=95,
        raw="<presence/>",
    )
    bad = Fix.invalid(source="pidf", at=T0 + 2, reason="latitude 91.0 outside -90..90", raw="x")
    await store.add_fix(good, incident_id=iid, received_at=T0 + 1)
    await store.add_fix(bad, incident_id=iid, received_at=T0 + 2)
    fixes = await store.fixes_for(iid)
    assert [f.valid for f in fixes] == [True, False]
    assert fixes[0].lat == pytest.approx(-3.6954) and fixes[0].confidence == 95
    assert fixes[0].shape == "Circle" and fixes[0].raw == "<presence/>"
    assert fixes[1].reason == "latitude 91.0 outside -90..90" and fixes[1].lat is None
    record = await store.get_incident(iid)
    location = incident_to_json(record)["location"]
    assert location["valid"] is True
    assert location["lat"] == pytest.approx(-3.6954) and location["radius_m"] == 25.0
    assert [f["valid"] for f in location["fixes"]] == [True, False]


async def test_pending_fixes_are_claimed_by_the_callers_incident(store: Any) -> None:
    caller = "+6281234567890"
    early = Fix.position(
        lat=-3.7, lon=128.2, radius_m=10.0, source="aml-https", at=T0, caller=caller
    )
    stale = Fix.position(
        lat=-3.1, lon=128.1, radius_m=10.0, source="aml-sms", at=T0 - 600, caller=caller
    )
    other = Fix.position(
        lat=-3.2, lon=128.3, radius_m=10.0, source="aml-sms", at=T0, caller="+6281111111111"
    )
    await store.add_fix(stale, incident_id=None, received_at=T0 - 600)
    await store.add_fix(early, incident_id=None, received_at=T0)
    await store.add_fix(other, incident_id=None, received_at=T0)
    iid = await store.create_incident(caller="081234567890", arrived_at=T0 + 5)
    assert await store.claim_fixes(caller, iid, since=T0 - 60) == 1
    assert [f.source for f in await store.fixes_for(iid)] == ["aml-https"]
    assert await store.claim_fixes(caller, iid, since=T0 - 60) == 0  # taken once
    assert await store.claim_fixes(None, iid, since=0) == 0
