"""The derived topics' event contracts: one time form (UTC, Z), round trips, naive times refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from schemas.events import AlertEvent, IntensityEvent, SiteEnergyEvent, decode_site_energy, encode_event

CST = timezone(timedelta(hours=8))


def _site(**kw: object) -> SiteEnergyEvent:
    fields: dict[str, object] = {
        "site": "hz-b001",
        "power_kw": 312.4,
        "as_of": datetime(2026, 11, 24, 10, 15, 0, 250000, tzinfo=CST),
        "bucket_start": datetime(2026, 11, 24, 10, 0, tzinfo=CST),
        "kwh": 77.9,
        "co2e_kg": 40.74,
        "intensity_g_per_kwh": 523.0,
        "factor_set": "ipcc2014-lifecycle",
        "emissions_quality": "measured",
    }
    return SiteEnergyEvent(**{**fields, **kw})  # type: ignore[arg-type]


def test_times_are_written_in_utc_with_z() -> None:
    data = encode_event(_site())
    assert b'"as_of":"2026-11-24T02:15:00.250000Z"' in data
    assert b'"bucket_start":"2026-11-24T02:00:00Z"' in data
    assert decode_site_energy(data) == _site()
    assert decode_site_energy(data).as_of == datetime(2026, 11, 24, 2, 15, 0, 250000, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _site(as_of=datetime(2026, 11, 24, 2, 15))  # noqa: DTZ001 - the point of the test
    with pytest.raises(msgspec.ValidationError):
        decode_site_energy(encode_event(_site()).replace(b"Z", b"", 1))


def test_every_contract_encodes_its_times_alike() -> None:
    t = datetime(2026, 11, 24, 10, 15, tzinfo=CST)
    intensity = IntensityEvent(
        region="CN-ZJ",
        ts=t,
        interval_s=300,
        factor_set="ipcc2014-lifecycle",
        scope="lifecycle",
        basis="consumption",
        kind="actual",
        intensity_g_per_kwh=523.0,
        generation_mw=50_000.0,
        fossil_share=0.6,
        renewable_share=0.3,
        nonfossil_share=0.4,
        flags=[],
        mix_revision=0,
        recorded_at=t,
    )
    alert = AlertEvent(
        event_id="x",
        fingerprint="f",
        status="firing",
        rule_id=1,
        at=t,
        starts_at=t,
        ends_at=None,
        value=1.0,
        site="hz-b001",
        region=None,
        tenant="default",
        labels={"alertname": "a"},
        annotations={},
    )
    for event in (intensity, alert):
        data = msgspec.json.decode(encode_event(event))
        times = [v for k, v in data.items() if k in ("ts", "recorded_at", "at", "starts_at")]
        assert times and all(v == "2026-11-24T02:15:00Z" for v in times)
