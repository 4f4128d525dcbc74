"""Dashboard cost in the browser: first paint, and the CPU the page uses with its live charts open.

Starts `wattstream up` on a scratch database and topics (simulator at `--speedup`, so events
arrive much faster than the real one-a-minute pace), opens Debian's Chromium (headless, through
Playwright) with three tabs — grid (4 charts), building (5), data centre (2): 11 live charts —
and measures, over `--minutes`, the CPU time of every Chromium process (from /proc) as a share
of one core. Reference in the same run: the same browser with three blank tabs.

    python -m loadtest.bench_dashboard --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import Browser, async_playwright

from loadtest.scratch import cpu_seconds, free_port, scratch, settings_env
from schemas.settings import Settings

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parents[1]


def _root_with(tag: str) -> int:
    """The browser process started with `tag` among its arguments (its renderers are its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    if not found:
        raise RuntimeError(f"no Chromium process with {tag}")
    return min(found)


async def _cpu_share(browser_pid: int, seconds: float) -> float:
    before, t0 = cpu_seconds(browser_pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(browser_pid) - before) / (time.monotonic() - t0)


async def _open_tabs(browser: Browser, base: str, key: str) -> float:
    first_paint = 0.0
    for page_name in ("grid", "site", "dc"):
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        await page.goto(f"{base}/#{page_name}")
        paint = await page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? 0"
        )
        first_paint = max(first_paint, float(paint))
        await page.fill("#key", key)
        await page.click("#signin button[type=submit]")
        await page.wait_for_selector(f"#page-{page_name}:not([hidden])")
    return first_paint


async def run(base_settings: Settings, minutes: float, speedup: float) -> dict[str, float]:
    async with scratch(base_settings, "benchdash") as s:
        port = free_port()
        env = settings_env(s, WATTSTREAM_API_PORT=str(port), WATTSTREAM_INGEST_METRICS_PORT=str(free_port()))
        log = tempfile.NamedTemporaryFile(prefix="bench-dashboard-", suffix=".log", delete=False)  # noqa: SIM115
        up = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wattstream", "up", "--sites", "6", "--speedup", str(speedup),
            env=env, cwd=_ROOT, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(180):
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.5)
            printed = await asyncio.to_thread(Path(log.name).read_text)
            key = re.search(r"admin key \(everything\): (ws_\S+)", printed)
            if key is None:
                raise RuntimeError("wattstream up printed no admin key")
            await asyncio.sleep(20)  # let data accumulate
            async with async_playwright() as p:
                args = ["--no-sandbox", "--disable-background-networking"]
                blank = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True, args=[*args, "--bench-tag=blank"]
                )
                for _ in range(3):
                    await (await blank.new_page()).goto("about:blank")
                reference = await _cpu_share(_root_with("--bench-tag=blank"), 30)
                await blank.close()
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True, args=[*args, "--bench-tag=dashboard"]
                )
                paint = await _open_tabs(browser, base, key[1])
                await asyncio.sleep(5)
                share = await _cpu_share(_root_with("--bench-tag=dashboard"), minutes * 60)
                await browser.close()
        finally:
            up.send_signal(signal.SIGINT)
            await asyncio.wait_for(up.wait(), 60)
            log.close()
    return {
        "first_paint_ms": paint,
        "cpu_share_11_charts": share,
        "cpu_share_blank": reference,
        "minutes": minutes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speedup", type=float, default=60.0, help="simulated seconds per second")
    args = parser.parse_args()
    r = asyncio.run(run(Settings(), args.minutes, args.speedup))
    print(
        f"dashboard, 3 tabs with 11 live charts for {r['minutes']:g} min: Chromium used "
        f"{r['cpu_share_11_charts'] * 100:.1f} % of a core (3 blank tabs, same run: "
        f"{r['cpu_share_blank'] * 100:.1f} %); first contentful paint {r['first_paint_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
