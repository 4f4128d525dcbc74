"""The README documents every setting, and nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from schemas.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
_DEPLOY_ONLY = {
    "CACHE",
    "PG_PORT",
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_HEAP",
    "DB_OWNER_PASSWORD",
    "DB_APP_PASSWORD",
    "DB_API_PASSWORD",
    "DEBIAN_MIRROR",
    "PG_DATABASE",
    "PG_SUPERUSER_PASSWORD",
    "PROMETHEUS_PORT",
    "GRAFANA_PASSWORD",
}


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = set(re.findall(r"^\| `WATTSTREAM_([A-Z0-9_]+)` \|", README, flags=re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert rows == fields


def test_no_unknown_variable_is_mentioned() -> None:
    mentioned = set(re.findall(r"WATTSTREAM_([A-Z0-9_]+)", README))
    fields = {name.upper() for name in Settings.model_fields}
    assert mentioned <= fields | _DEPLOY_ONLY


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README
    assert "make test" in README
