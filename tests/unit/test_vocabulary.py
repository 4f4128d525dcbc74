"""`schemas.vocabulary` against the SQL migrations, read as text: each vocabulary is the value list
of its column's CHECK constraint, in the same order, and each quality stored as a smallint is
its column comment's codes. A value added on one side only fails here, not at an INSERT."""

from __future__ import annotations

import re

import pytest

from schemas.migrations import migrations
from schemas.vocabulary import (
    BUCKET_QUALITIES,
    EMISSION_QUALITIES,
    METER_ROLES,
    READING_QUALITIES,
    READING_QUALITY_CODES,
    RESOLUTION_S,
    RESOLUTIONS,
    SITE_KINDS,
    SUB_ITEMS,
)

_TABLE = re.compile(r"^\s*(?:CREATE|ALTER)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(\w+)", re.I)
_CHECK_IN = re.compile(r"CHECK\s*\(\s*(\w+)\s+IN\s*\(([^()]*)\)\s*\)", re.I)
_SMALLINT = r"^\s*{column}\s+smallint\b[^\n]*--\s*([^\n]*)$"


def _statements() -> list[str]:
    """Every statement of every migration in order, without comments or dollar-quoted bodies
    (a function's body is not a table's definition, and its `;` would split it)."""
    out: list[str] = []
    for m in migrations():
        sql = re.sub(r"\$(\w*)\$.*?\$\1\$", "", m.sql, flags=re.S)
        sql = re.sub(r"--[^\n]*", "", sql)
        out.extend(s for s in sql.split(";") if s.strip())
    return out


def _checked_values() -> dict[tuple[str, str], tuple[str, ...]]:
    """(table, column) -> the values its `CHECK (column IN (...))` allows; a later migration's
    constraint on the same column replaces an earlier one."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for statement in _statements():
        table = _TABLE.match(statement)
        if table is None:
            continue
        for column, values in _CHECK_IN.findall(statement):
            found[table[1], column] = tuple(re.findall(r"'([^']*)'", values))
    return found


def _commented_codes(table: str, column: str) -> tuple[str, ...]:
    """The names a smallint column's comment gives its codes (`-- 0 ok, 1 estimated, ...`), by code."""
    for m in migrations():
        created = re.search(rf"^CREATE TABLE {table} \((.*?)^\);", m.sql, flags=re.M | re.S)
        line = created and re.search(_SMALLINT.format(column=column), created[1], flags=re.M)
        if line:
            codes = [(int(code), name) for code, name in re.findall(r"(\d+)\s+(\w+)", line[1])]
            assert [code for code, _ in codes] == list(range(len(codes))), line[1]
            return tuple(name for _, name in codes)
    raise AssertionError(f"no commented smallint {table}.{column} in the migrations")


CHECKED = {
    ("sites", "kind"): SITE_KINDS,
    ("meters", "role"): METER_ROLES,
    ("meters", "sub_item"): SUB_ITEMS,
    ("site_emissions", "quality"): EMISSION_QUALITIES,
}
# enumerated CHECKs whose words are not (yet) in schemas.vocabulary: listed, so that a new
# enumerated column is a decision, not an accident
ELSEWHERE = {
    ("grid_intensity", "scope"),
    ("grid_intensity", "basis"),
    ("grid_intensity", "kind"),
    ("green_certificates", "kind"),
    ("api_keys", "role"),
    ("alert_rules", "kind"),
    ("alert_rules", "comparator"),
    ("alert_rules", "severity"),
    ("alert_state", "state"),
    ("alerts", "status"),
    ("webhook_deliveries", "status"),
    ("webhook_subscriptions", "min_severity"),
}


@pytest.mark.parametrize(("column", "vocabulary"), CHECKED.items(), ids=[".".join(k) for k in CHECKED])
def test_vocabulary_is_its_check_constraint(column: tuple[str, str], vocabulary: tuple[str, ...]) -> None:
    assert _checked_values()[column] == vocabulary


def test_every_enumerated_check_is_accounted_for() -> None:
    assert set(_checked_values()) == set(CHECKED) | ELSEWHERE


@pytest.mark.parametrize(
    ("table", "vocabulary"),
    [("readings", READING_QUALITIES), ("energy_interval", BUCKET_QUALITIES)],
)
def test_stored_quality_codes_are_the_vocabulary_positions(table: str, vocabulary: tuple[str, ...]) -> None:
    assert _commented_codes(table, "quality") == vocabulary


def test_reading_quality_codes_invert_the_names() -> None:
    assert [READING_QUALITY_CODES[q] for q in READING_QUALITIES] == list(range(len(READING_QUALITIES)))
    assert len(READING_QUALITY_CODES) == len(READING_QUALITIES)


def test_fixed_resolutions_fit_an_hour() -> None:
    """The API counts the resolutions without a length (local days, months) as whole hours."""
    assert set(RESOLUTION_S) < set(RESOLUTIONS)
    assert all(3600 % s == 0 for s in RESOLUTION_S.values())
