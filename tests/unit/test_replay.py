"""Replay adapters on the real sample files and on the quirks other files of the same sources have."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.replay import biohpc_power_tsv, cambridge_interval_csv

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_cambridge_b10_register_ends_at_the_file_total() -> None:
    path = DATA / "buildings" / "cambridge_b10_electricity_2021.csv"
    readings, report = cambridge_interval_csv(path, site="b10")
    total = sum(float(line.split(",")[1]) for line in path.read_text().splitlines()[1:])
    assert readings[-1].energy_kwh == pytest.approx(total, rel=1e-12)
    assert total == pytest.approx(55371.3)
    assert readings[0].ts == datetime(2021, 1, 1, tzinfo=UTC) and readings[0].energy_kwh == 0
    assert readings[-1].ts == datetime(2022, 1, 1, tzinfo=UTC)  # the last hour ends at midnight
    assert not report.counts


def test_cambridge_zeros_are_missing_by_default() -> None:
    path = DATA / "buildings" / "cambridge_b2_electricity_2021.csv"
    readings, report = cambridge_interval_csv(path, site="b2")
    assert report.counts == {"zero_value_treated_as_missing": 46}
    kept, kept_report = cambridge_interval_csv(path, site="b2", zero_as_missing=False)
    assert len(kept) == len(readings) + 46 and not kept_report.counts
    assert kept[-1].energy_kwh == pytest.approx(readings[-1].energy_kwh)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_cambridge_format_quirks(newline: str) -> None:
    text = newline.join(
        [
            "\ufeffdatetime,heating load [kWh]",
            "2021-03-28 00:00:00,1.5",
            "2021-03-28 00:30:00,2.0",
            "2021-03-28 01:30:00,1.0",  # does not exist in London: clocks jump 01:00 -> 02:00
            "2021-03-28 02:00:00,abc",
            "2021-03-28 02:30:00,-1",
            "2021-03-28 02:30:00,0.5",
            "2021-03-28 02:30:00,0.5",
            "",
            "2021-03-28 03:00:00,0",
            "2021-03-28 03:30:00,2.5",
        ]
    )
    readings, report = cambridge_interval_csv(text, site="s", tz="Europe/London")
    assert report.counts == {
        "nonexistent_local_time": 1,
        "not_a_number": 1,
        "negative_value": 1,
        "duplicate_timestamp": 1,
        "footer_or_blank": 1,
        "zero_value_treated_as_missing": 1,
    }
    # half-hourly: each reading closes its half hour; BST is UTC+1 from 01:00 UTC
    assert [(r.ts.astimezone(UTC).strftime("%H:%M"), r.energy_kwh) for r in readings] == [
        ("00:00", 0.0),
        ("00:30", 1.5),
        ("01:00", 3.5),
        ("02:00", 4.0),
        ("03:00", 6.5),
    ]


def test_cambridge_refuses_another_format() -> None:
    with pytest.raises(ValueError, match="datetime"):
        cambridge_interval_csv("time,power_kw\n2021-01-01 00:00:00,3\n", site="s")


def test_biohpc_file_oldest_first_with_footer_and_fall_back_hour() -> None:
    readings, report = biohpc_power_tsv(
        DATA / "datacentre" / "biohpc_cbsugpu10_hourly_usage_stats.tsv", site="dc"
    )
    assert len(readings) == 8693
    assert report.counts == {"footer_or_blank": 5, "ambiguous_local_time": 1}
    times = [r.ts for r in readings]
    assert times == sorted(times)
    assert times[0] == datetime(2024, 10, 31, 19, 0, tzinfo=UTC)  # 15:00 EDT
    assert readings[0].power_kw == pytest.approx(0.062895)
    assert all(r.energy_kwh is None and r.power_kw is not None for r in readings)


def test_biohpc_quirks_without_bom_in_kw() -> None:
    text = "\r\n".join(
        [
            "name\ttimestamp\tpowerave\tpowermin",
            "srv\t2025-03-09 03:00:00.000\t2.5\t1",
            "srv\t2025-03-09 02:00:00.000\t2.0\t1",  # nonexistent in New York
            "srv\t2025-03-09 01:00:00.000\tNaN\t1",
            "srv\tnot a time\t1\t1",
            "",
            "(3 rows affected)",
            "Completion time: 2025-03-10T00:00:00-04:00",
        ]
    )
    readings, report = biohpc_power_tsv(text, site="dc", unit="kW")
    assert [r.power_kw for r in readings] == [2.5]
    assert report.counts == {
        "nonexistent_local_time": 1,
        "not_a_number": 1,
        "bad_timestamp": 1,
        "footer_or_blank": 3,
    }
