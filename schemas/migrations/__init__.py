"""Numbered SQL migrations, shipped as package data and applied in order by `wattstream migrate`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files

__all__ = ["Migration", "migrations"]

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """Every migration file, in version order; a gap or a repeated number is an error."""
    found: list[Migration] = []
    for entry in files(__package__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    expected = list(range(1, len(found) + 1))
    if [mig.version for mig in found] != expected:
        raise RuntimeError(
            f"migration numbers must run 1..n without gaps, found {[m.version for m in found]}"
        )
    return found
