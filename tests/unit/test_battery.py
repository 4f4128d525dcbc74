"""The reliability battery's own parts, without services: the traffic it sends is what it expects,
its oracle agrees with the platform's kernel on that traffic (so a row that fails points at the
platform, not at the battery), the poison covers the documented reasons, the dead-letter check
reads the contract, and the battery refuses to drive another instance than its settings name."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import SecretStr

from core.energy import interval_energy
from loadtest.battery.deadletters import check_dead_letters
from loadtest.battery.kafka_io import Message
from loadtest.battery.oracle import meter_energy
from loadtest.battery.poison import KINDS, Poison
from loadtest.battery.report import Progress, RowResult, render
from loadtest.battery.rows_ingest import _fault_plan
from loadtest.battery.services import BatteryError, Services
from loadtest.battery.traffic import make_traffic
from schemas.messages import REASONS
from schemas.settings import Settings

T0 = datetime(2026, 11, 2, tzinfo=UTC)
NAN = float("nan")


def _ts_us(ts: object) -> int:
    if isinstance(ts, int):
        return ts * 1000
    assert isinstance(ts, str)
    return (datetime.fromisoformat(ts) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_the_messages_carry_exactly_the_expected_readings() -> None:
    t = make_traffic("u", 6000, 60, seed=5, t0=T0)
    expected = {(t.meters[r.meter].site, t.meters[r.meter].meter, r.ts_us): r for r in t.expected}
    assert len(expected) == len(t.expected)
    seen: Counter[tuple[str, str, int]] = Counter()
    forms: Counter[str] = Counter()
    newest: dict[tuple[str, str], int] = {}
    late = 0
    for m in t.messages:
        assert m.value is not None and m.key is not None
        body = json.loads(m.value)
        for d in body.get("readings", [body]):
            assert m.key.decode() == d["site"]  # keyed by site: a site's readings stay in order
            key = (d["site"], d["meter"], _ts_us(d["ts"]))
            sent = expected[key]
            assert (d.get("energy_kwh"), d.get("power_kw"), d.get("quality", "ok")) == (
                sent.energy_kwh,
                sent.power_kw,
                sent.quality,
            )
            forms["epoch" if isinstance(d["ts"], int) else d["ts"][-6:]] += 1
            if seen[key] == 0 and key[2] < newest.get(key[:2], -1):
                late += 1
            newest[key[:2]] = max(newest.get(key[:2], -1), key[2])
            seen[key] += 1
    assert set(seen) == set(expected)
    assert sum(seen.values()) - len(seen) == t.counts["duplicate"] > 0
    assert late == t.counts["late"] > 0
    assert len(forms) >= 4  # epoch ms, Z, +08:00, -05:30
    assert t.counts["single"] > 0 and t.counts["batch"] > 0
    assert min(t.counts[k] for k in ("reset", "rollover", "dip", "spike", "gap")) > 0


def test_the_oracle_agrees_with_the_platform_kernel_on_battery_traffic() -> None:
    t = make_traffic("u", 12_000, 120, seed=9, t0=T0)
    by_meter: dict[int, list[tuple[int, float | None, float | None]]] = {}
    for r in t.expected:
        by_meter.setdefault(r.meter, []).append((r.ts_us, r.energy_kwh, r.power_kw))
    for i, readings in by_meter.items():
        m = t.meters[i]
        o = meter_energy(
            readings,
            multiplier=m.multiplier,
            rollover_kwh=m.rollover_kwh,
            max_power_kw=m.max_power_kw,
            bucket_s=900,
            gap_s=3600,
        )
        rs = sorted(readings)
        n = len(rs)
        k = interval_energy(
            np.zeros(n, dtype=np.int64),
            [r[0] for r in rs],
            [NAN if r[1] is None else r[1] for r in rs],
            [NAN if r[2] is None else r[2] for r in rs],
            multiplier=[m.multiplier] * n,
            rollover_kwh=[m.rollover_kwh or NAN] * n,
            max_power_kw=[m.max_power_kw or NAN] * n,
        )
        b = k.buckets
        assert list(b.bucket_start_us) == sorted(o.buckets), m
        for j, start in enumerate(b.bucket_start_us):
            want = o.buckets[int(start)]
            assert math.isclose(b.kwh[j], want.kwh, rel_tol=1e-9, abs_tol=1e-9), (m, start)
            assert b.coverage_s[j] == pytest.approx(want.covered_us / 1e6)
            assert (b.n[j], b.quality[j]) == (want.n, o.quality(int(start), 900_000_000)), (m, start)
        assert (
            {rs[j][0] for j in np.flatnonzero(k.spikes)} == o.spikes == {ts for mi, ts in t.spikes if mi == i}
        )


def test_the_poison_covers_thirty_kinds_with_documented_reasons() -> None:
    assert len(KINDS) >= 30
    assert len({k.name for k in KINDS}) == len(KINDS)
    assert {k.reason for k in KINDS} <= set(REASONS)


def test_the_fault_plan_interleaves_restarts_among_kills() -> None:
    for kills, restarts in ((5, 2), (2, 1), (1, 0)):
        plan = _fault_plan(kills, restarts)
        assert Counter(plan) == Counter({"kill": kills} | ({"pg": restarts} if restarts else {}))
        assert plan[0] == plan[-1] == "kill"
        assert "pg,pg" not in ",".join(plan)


def _dead_letter(offset: int, headers: list[tuple[str, bytes]], value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic="dl", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"site",
        value=value, checksum=None, serialized_key_size=4, serialized_value_size=len(value or b""),
        headers=headers,
    )  # fmt: skip


def _worker(offset: int, reason: str) -> list[tuple[str, bytes]]:
    return [
        ("wattstream.reason", reason.encode()),
        ("wattstream.error", b"why"),
        ("wattstream.origin.topic", b"r"),
        ("wattstream.origin.partition", b"0"),
        ("wattstream.origin.offset", str(offset).encode()),
    ]


def test_the_dead_letter_check_reads_the_first_header_and_spots_forgeries() -> None:
    forged = (("wattstream.origin.offset", b"7"), ("wattstream.reasons", b"forged-1"))
    sent = {
        (0, 1): (Message(b"site", b"\x00bad", forged), Poison("colliding_headers", "not_json")),
        (0, 2): (Message(b"site", b"x" * 100), Poison("oversized_single", "too_large")),
        (0, 3): (Message(b"site", b"[1]"), Poison("array", "not_an_object")),
    }
    records = [
        _dead_letter(0, _worker(1, "not_json") + list(forged), b"\x00bad"),
        _dead_letter(1, _worker(1, "not_json") + list(forged), b"\x00bad"),  # a repeat: the same origin
        _dead_letter(
            2,
            [
                *_worker(2, "too_large"),
                ("wattstream.truncated", b"true"),
                ("wattstream.origin.length", b"100"),
                ("wattstream.origin.sha256", hashlib.sha256(b"x" * 100).hexdigest().encode()),
            ],
            b"x" * 10,
        ),
        _dead_letter(3, _worker(3, "wrong_type"), b"[1]"),
        _dead_letter(4, [("reason", b"not_json")], b"?"),
    ]
    c = check_dead_letters(records, "r", sent)
    assert (c.found, c.unexpected, c.unreadable, c.truncated) == (3, 0, 1, 1)
    assert not c.missing and not c.wrong_bytes and not c.wrong_headers
    assert c.wrong_reason == {"array": Counter({"wrong_type": 1})}
    assert c.forged_first == Counter({"wattstream.reasons": 1})  # the worker wrote no reasons header
    assert len(c.problems) == 3


def test_the_table_names_each_broken_promise() -> None:
    ok = RowResult("crash consistency", load="300 readings", faults="kills", figure="0 lost")
    bad = RowResult("poison", problems=["3 origins missing"])
    out = render([ok, bad, RowResult("API", error="RuntimeError: no")], "ci", 12.0)
    assert "PASS" in out and "FAIL" in out and "ERROR" in out
    assert "3 origins missing" in out and "1 of 3 rows held." in out


def test_the_battery_drives_only_the_instance_its_settings_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def at(pg: int, kafka: int) -> Settings:
        url = SecretStr(f"postgresql://u:p@127.0.0.1:{pg}/wattstream")
        return Settings(
            kafka_bootstrap=f"127.0.0.1:{kafka}",
            database_url=url,
            migrate_database_url=url,
            api_database_url=url,
        )

    monkeypatch.setenv("WATTSTREAM_PG_PORT", "56432")
    monkeypatch.setenv("WATTSTREAM_KAFKA_PORT", "29092")
    Services(at(56432, 29092), tmp_path / "services.log", Progress())
    with pytest.raises(BatteryError, match="WATTSTREAM_PG_PORT"):
        Services(at(55432, 29092), tmp_path / "services.log", Progress())
    with pytest.raises(BatteryError, match="WATTSTREAM_KAFKA_PORT"):
        Services(at(56432, 19092), tmp_path / "services.log", Progress())
