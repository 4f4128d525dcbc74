"""The battery's results: one row per promise, printed as a table; progress lines on stderr."""

from __future__ import annotations

import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Progress", "RowResult", "Verdict", "render"]

Verdict = Literal["PASS", "FAIL", "ERROR"]


@dataclass
class RowResult:
    """What one row promised, what it did to the system, what it measured and whether it held.
    `problems` says, for people, each way the promise broke (empty when it held)."""

    test: str
    load: str = ""
    faults: str = ""
    figure: str = ""
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # the row itself could not run to its end
    seconds: float = 0.0

    @property
    def verdict(self) -> Verdict:
        if self.error is not None:
            return "ERROR"
        return "FAIL" if self.problems else "PASS"


class Progress:
    """Timestamped progress lines on stderr: the battery is long work."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._row = "battery"

    def row(self, name: str) -> None:
        self._row = name
        self.say("started")

    def say(self, message: str) -> None:
        elapsed = int(time.monotonic() - self._t0)
        print(
            f"[battery {elapsed // 60:02d}:{elapsed % 60:02d}] {self._row}: {message}",
            file=sys.stderr,
            flush=True,
        )


_COLUMNS = (("test", 22), ("load", 34), ("faults", 30), ("figure", 52), ("verdict", 7))


def render(results: list[RowResult], scale: str, seconds: float) -> str:
    """The table, then each broken promise's details."""
    lines = [f"wattstream reliability battery (scale {scale}, {seconds:.0f} s)", ""]
    header = " | ".join(name.ljust(width) for name, width in _COLUMNS)
    lines += [header, "-+-".join("-" * width for _, width in _COLUMNS)]
    for r in results:
        cells = [r.test, r.load, r.faults, r.figure if r.error is None else f"error: {r.error}", r.verdict]
        wrapped = [textwrap.wrap(c, width) or [""] for c, (_, width) in zip(cells, _COLUMNS, strict=True)]
        for i in range(max(len(w) for w in wrapped)):
            lines.append(
                " | ".join(
                    (w[i] if i < len(w) else "").ljust(width)
                    for w, (_, width) in zip(wrapped, _COLUMNS, strict=True)
                )
            )
        lines.append("-+-".join("-" * width for _, width in _COLUMNS))
    broken = [r for r in results if r.verdict != "PASS"]
    if broken:
        lines += ["", "Broken promises:"]
        for r in broken:
            lines.append(f"- {r.test} ({r.verdict}, {r.seconds:.0f} s):")
            for p in r.problems + ([f"the row could not finish: {r.error}"] if r.error else []):
                lines += textwrap.wrap(p, 106, initial_indent="    ", subsequent_indent="      ")
    held = sum(r.verdict == "PASS" for r in results)
    lines += ["", f"{held} of {len(results)} rows held."]
    return "\n".join(lines)
