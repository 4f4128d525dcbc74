"""The dashboard in Debian's Chromium, driven by Playwright, against the whole demo stack
(`wattstream up`: real Kafka, TimescaleDB, ingest, API, simulator). Screenshots go to
test-artifacts/dashboard-*.png."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, free_port, settings_env, wait_for
from playwright.async_api import Browser, ConsoleMessage, Page, Response, async_playwright

from schemas.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def stack(pipeline: Settings, tmp_path: Path) -> AsyncIterator[tuple[str, str, str]]:
    """`wattstream up` on free ports: (base URL, admin key, manager key of tenant hz-xihu)."""
    port = free_port()
    env = settings_env(
        pipeline,
        WATTSTREAM_API_PORT=str(port),
        WATTSTREAM_INGEST_METRICS_PORT=str(free_port()),
        WATTSTREAM_CACHE=str(tmp_path),
        WATTSTREAM_ALERT_TICK_S="1",
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wattstream", "up", "--sites", "6", "--rate", "300", "--speedup", "300",
            env=env, cwd=ROOT, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:

            async def ready() -> bool | str:
                try:
                    return (await client.get("/readyz")).status_code == 200 or "not ready"
                except httpx.TransportError as exc:
                    return repr(exc)

            await wait_for(ready, 90, "the demo API")
            printed = log_path.read_text()
            admin = re.search(r"admin key \(everything\): (ws_\S+)", printed)
            manager = re.search(r"manager key \(tenant hz-xihu only\): (ws_\S+)", printed)
            assert admin and manager, printed[-2000:]
            headers = {"Authorization": f"Bearer {admin[1]}"}
            # an alert that fires at once on every hz-xihu building, for the alerts page
            rule = {"name": "browser test: any load", "kind": "threshold", "metric": "site_power_kw",
                    "threshold": 0, "tenant": "hz-xihu", "severity": "warning"}  # fmt: skip
            assert (await client.post("/v1/alert-rules", json=rule, headers=headers)).status_code == 201

            async def data_flowing() -> bool | object:
                regions = (await client.get("/v1/grid/regions", headers=headers)).json()
                alerts = (await client.get("/v1/alerts", headers=headers)).json()
                return (any(r["region"] == "CN-ZJ" for r in regions) and len(alerts) > 0) or (regions, alerts)

            await wait_for(data_flowing, 90, "grid intensity and a firing alert")
        yield base, admin[1], manager[1]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        try:
            yield b
        finally:
            await b.close()


async def _open(browser: Browser, base: str, key: str, width: int, height: int) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)  # (failed requests are reported below, with their URL)

    def on_response(response: Response) -> None:
        if response.status >= 400:
            errors.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(base + "/")
    await page.fill("#key", key)
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#tabs:not([hidden])")
    return page, errors


async def _changes(page: Page, selector: str, within: float) -> tuple[str, str]:
    """The text of `selector` now and after it changed (fails if it does not within `within` s)."""
    await page.wait_for_function(
        f"document.querySelector('{selector}').textContent.length > 0", timeout=30_000
    )
    before = await page.text_content(selector) or ""
    await page.wait_for_function(
        f"document.querySelector('{selector}').textContent !== {before!r}", timeout=within * 1000
    )
    return before, await page.text_content(selector) or ""


async def test_dashboard_pages_live_in_chromium(
    stack: tuple[str, str, str], browser: Browser, artifacts: Path
) -> None:
    base, admin, manager = stack
    page, errors = await _open(browser, base, admin, 1366, 768)
    paint = await page.evaluate(
        "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
    )
    print(f"first contentful paint: {paint:.0f} ms")

    # grid: intensity, mix, shares, lowest-carbon window; the live figure moves
    await page.click('nav button[data-page="grid"]')
    await page.select_option("#region", "CN-ZJ")
    before, after = await _changes(page, "#grid-now", 30)
    assert "gCO₂/kWh" in after and before != after
    await page.wait_for_function("document.querySelector('#window-text').textContent.length > 1")
    await page.screenshot(path=artifacts / "dashboard-grid-1366.png", full_page=True)

    # a building: live power moves; the other charts are drawn
    await page.click('nav button[data-page="site"]')
    before, after = await _changes(page, "#site-now", 30)
    assert "kW" in after
    assert await page.text_content("#eui")
    await page.screenshot(path=artifacts / "dashboard-site-1366.png", full_page=True)

    # a data centre: PUE with its GB 40879-2021 grade
    await page.click('nav button[data-page="dc"]')
    await page.wait_for_function("document.querySelector('#dc-now').textContent.includes('GB 40879-2021')")
    await page.screenshot(path=artifacts / "dashboard-dc-1366.png", full_page=True)

    # alerts: acknowledging one updates the list
    await page.click('nav button[data-page="alerts"]')
    await page.wait_for_selector("#alerts tbody tr button.ack")
    row = page.locator("#alerts tbody tr", has=page.locator("button.ack")).first
    fingerprint = await row.get_attribute("data-fingerprint")
    await row.locator("button.ack").click()
    await page.wait_for_selector(f'#alerts tbody tr[data-fingerprint="{fingerprint}"] .tag')
    assert "acknowledged" in (
        await page.text_content(f'#alerts tbody tr[data-fingerprint="{fingerprint}"]') or ""
    ) or ("已确认" in (await page.text_content(f'#alerts tbody tr[data-fingerprint="{fingerprint}"]') or ""))
    await page.screenshot(path=artifacts / "dashboard-alerts-1366.png", full_page=True)

    # English labels
    await page.click("#lang")
    await page.wait_for_function(
        "document.querySelector('nav button[data-page=\"grid\"]').textContent === 'Grid'"
    )
    assert errors == [], errors
    await page.close()

    # a manager sees only its district's sites and alerts
    page, errors = await _open(browser, base, manager, 1366, 768)
    await page.click('nav button[data-page="site"]')
    await page.wait_for_function("document.querySelector('#site').options.length > 0")
    options = await page.eval_on_selector_all("#site option", "els => els.map(e => e.value)")
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as client:
        sites = (await client.get("/v1/sites")).json()["items"]
    tenant_of = {x["site_id"]: x["tenant"] for x in sites}
    assert options and {tenant_of[o] for o in options} == {"hz-xihu"}
    await page.click('nav button[data-page="alerts"]')
    await page.wait_for_selector("#alerts tbody tr")
    subjects = await page.eval_on_selector_all(
        "#alerts tbody tr td:nth-child(3)", "els => els.map(e => e.textContent)"
    )
    assert subjects and all(tenant_of.get(s) == "hz-xihu" for s in subjects), subjects
    assert errors == [], errors
    await page.close()

    # a phone: one column, nothing wider than the screen
    page, errors = await _open(browser, base, admin, 390, 844)
    await page.click('nav button[data-page="grid"]')
    await page.wait_for_function("document.querySelector('#grid-now').textContent.length > 0", timeout=30_000)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    await page.screenshot(path=artifacts / "dashboard-grid-phone.png", full_page=True)
    assert errors == [], errors
    await page.close()
