"""The numbered SQL migrations as shipped: found in order, checksummed, and the foundation
migration creating what the rest of wattstream relies on. No database: the SQL is read as text."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import schemas.migrations
from schemas.migrations import Migration, migrations

MIGRATIONS_DIR = Path(schemas.migrations.__file__).parent
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def _without_comments(sql: str) -> str:
    """The SQL with `--` comments removed, so commented-out statements do not count."""
    return re.sub(r"--[^\n]*", "", sql)


def _statements_of(version: int) -> str:
    (mig,) = [m for m in migrations() if m.version == version]
    return _without_comments(mig.sql)


def test_versions_run_one_to_n_in_order() -> None:
    found = migrations()
    assert len(found) >= 1
    assert [m.version for m in found] == list(range(1, len(found) + 1))


def test_every_sql_file_in_the_package_is_a_migration() -> None:
    on_disk = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert on_disk, "no .sql files next to schemas/migrations/__init__.py"
    assert all(_FILE.match(name) for name in on_disk), on_disk
    assert [f"{m.version:03d}_{m.name}.sql" for m in migrations()] == on_disk


def test_each_migration_has_sql_matching_its_file() -> None:
    for m in migrations():
        assert re.fullmatch(r"[a-z0-9_]+", m.name)
        assert _without_comments(m.sql).strip(), f"{m.version:03d}_{m.name} has no statements"
        assert m.sql == (MIGRATIONS_DIR / f"{m.version:03d}_{m.name}.sql").read_text(encoding="utf-8")


def test_checksums_are_sha256_of_the_file_and_stable() -> None:
    first = {m.version: m.checksum for m in migrations()}
    second = {m.version: m.checksum for m in migrations()}
    assert first == second
    for m in migrations():
        data = (MIGRATIONS_DIR / f"{m.version:03d}_{m.name}.sql").read_bytes()
        assert m.checksum == hashlib.sha256(data).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", m.checksum)
    assert len(set(first.values())) == len(first), "two migrations with identical SQL"


def test_checksum_follows_the_sql_only() -> None:
    a = Migration(1, "x", "CREATE TABLE t (a int);")
    assert a.checksum == Migration(7, "other_name", "CREATE TABLE t (a int);").checksum
    assert a.checksum != Migration(1, "x", "CREATE TABLE t (a int); ").checksum
    assert a.checksum != Migration(1, "x", "CREATE TABLE t (b int);").checksum


def _fake_package(tmp_path: Path, names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in names:
        (tmp_path / name).write_text(f"-- {name}\nSELECT 1;\n", encoding="utf-8")
    monkeypatch.setattr(schemas.migrations, "files", lambda _package: tmp_path)


def test_files_are_ordered_by_number_not_by_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(
        tmp_path,
        ["010_ten.sql", "002_two.sql", "001_one.sql", *[f"{i:03d}_n.sql" for i in range(3, 10)]],
        monkeypatch,
    )
    found = migrations()
    assert [m.version for m in found] == list(range(1, 11))
    assert (found[0].name, found[1].name, found[-1].name) == ("one", "two", "ten")
    assert found[9].sql == "-- 010_ten.sql\nSELECT 1;\n"


def test_other_files_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(
        tmp_path,
        ["001_one.sql", "__init__.py", "README.md", "002_Two.sql", "03_short.sql", "004_x.sql.bak"],
        monkeypatch,
    )
    assert [(m.version, m.name) for m in migrations()] == [(1, "one")]


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(["001_a.sql", "003_c.sql"], id="gap"),
        pytest.param(["001_a.sql", "002_b.sql", "002_again.sql"], id="repeated"),
        pytest.param(["002_b.sql"], id="no-first"),
        pytest.param(["000_zero.sql", "001_a.sql"], id="zero"),
    ],
)
def test_bad_numbering_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    _fake_package(tmp_path, names, monkeypatch)
    with pytest.raises(RuntimeError, match="without gaps"):
        migrations()


# --- 001: the foundation ------------------------------------------------------------------


def _tables_created(sql: str) -> set[str]:
    return {m.lower() for m in re.findall(r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", sql, re.I)}


def _table_body(sql: str, table: str) -> str:
    """The column list of `CREATE TABLE table (...)`, parentheses balanced."""
    m = re.search(rf"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{table}\s*\(", sql, re.I)
    assert m, f"no CREATE TABLE {table}"
    depth, start = 1, m.end()
    for i in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            return sql[start:i]
    raise AssertionError(f"CREATE TABLE {table} is not closed")


def test_001_is_the_foundation() -> None:
    assert migrations()[0].version == 1
    assert migrations()[0].name == "foundation"


def test_001_creates_the_core_tables() -> None:
    created = _tables_created(_statements_of(1))
    assert {"sites", "meters", "readings", "meter_state", "ingest_offsets", "quarantine"} <= created


def test_001_makes_readings_a_hypertable_on_ts() -> None:
    sql = _statements_of(1)
    calls = re.findall(r"create_hypertable\s*\(\s*'(\w+)'\s*,([^;]*)", sql, re.I)
    assert [table for table, _ in calls] == ["readings"]
    assert re.search(r"'ts'", calls[0][1]), calls[0][1]
    # the hypertable call comes after the table exists
    assert sql.lower().index("create table readings") < sql.lower().index("create_hypertable")


def test_001_readings_columns() -> None:
    body = _table_body(_statements_of(1), "readings")
    columns = {
        line.split()[0].lower()
        for line in body.splitlines()
        if line.strip() and not re.match(r"\s*(CHECK|UNIQUE|PRIMARY|CONSTRAINT|FOREIGN)\b", line, re.I)
    }
    assert columns == {"meter_id", "ts", "energy_kwh", "power_kw", "quality"}
    assert re.search(r"\bts\s+timestamptz\s+NOT\s+NULL", body, re.I), "readings.ts must be timestamptz"


def test_001_readings_are_unique_on_meter_and_ts() -> None:
    sql = _statements_of(1)
    index = re.search(r"CREATE\s+UNIQUE\s+INDEX\s+\w+\s+ON\s+readings\s*\(([^)]*)\)", sql, re.I)
    assert index, "no unique index on readings"
    columns = [c.split()[0].lower() for c in index[1].split(",")]
    assert columns == ["meter_id", "ts"]


def test_001_ingest_offsets_keyed_by_group_topic_partition() -> None:
    body = _table_body(_statements_of(1), "ingest_offsets")
    key = re.search(r"PRIMARY\s+KEY\s*\(([^)]*)\)", body, re.I)
    assert key
    assert [c.strip() for c in key[1].split(",")] == ["consumer_group", "topic", "partition"]


def test_later_migrations_do_not_recreate_foundation_tables() -> None:
    foundation = _tables_created(_statements_of(1))
    for m in migrations()[1:]:
        assert not (_tables_created(_without_comments(m.sql)) & foundation), m.name


def test_comment_stripping_is_not_a_tautology() -> None:
    assert _tables_created(_without_comments("-- CREATE TABLE ghost (a int);\nSELECT 1;")) == set()
    assert _tables_created("CREATE TABLE IF NOT EXISTS Real_One (a int);") == {"real_one"}
