"""Options the CLI refuses with a clear message instead of doing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["bench", "--only", "readings"], "--only must be ingest, intensity or alerts"),
        (["ingest", "--only", "ingest"], "--only must be readings, grid or webhooks"),
        (["battery", "--scale", "huge"], "--scale must be one of ci, full"),
        (["battery", "--only", "everything"], "unknown row(s) everything"),
    ],
)
def test_an_unknown_only_is_refused(command: list[str], expected: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wattstream", *command], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert expected in done.stdout + done.stderr
