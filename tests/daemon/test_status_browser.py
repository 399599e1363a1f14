"""The status page in a real browser: headless Chromium (Debian's package, driven through its
chromedriver by Selenium) against a paper daemon trading on the sandbox.

The page must load with no console error and no request to another host, show the numbers of
`/state`, follow a slice that closes, and refuse a wrong control token while the right one
halts the daemon. A screenshot is saved (`TRADINGD_SCREENSHOT` names where; by default the
test's folder), which is how the README's picture is made.

Every Selenium call blocks, so each runs in a thread (`asyncio.to_thread`) while the daemon
and the sandbox run on the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from sandbox import Sandbox
from tests.daemon.livekit import ENV, Session, start_session

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "browser-test-control-token"
WAIT_S = 30.0
T = TypeVar("T")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium and its driver not installed (Debian: chromium, chromium-driver)",
    ),
]


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    assert CHROMIUM is not None
    assert CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        "--no-first-run",
        "--disable-background-networking",  # the browser's own calls home are not the page's
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def off_loop(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


async def state_of(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + "/state") as response:
        body: dict[str, Any] = orjson.loads(await response.read())
        return body


def requested_urls(driver: WebDriver) -> list[str]:
    urls = []
    entries: list[dict[str, Any]] = driver.get_log("performance")  # type: ignore[no-untyped-call]
    for entry in entries:
        message = orjson.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def until(driver: WebDriver, condition: Callable[[WebDriver], Any]) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition)


def page_text(driver: WebDriver, element_id: str) -> str:
    text: str = driver.find_element(By.ID, element_id).text
    return text


def table(driver: WebDriver, element_id: str) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{element_id} tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def severe(driver: WebDriver) -> list[dict[str, Any]]:
    """The console's errors since the last call."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e for e in entries if e["level"] == "SEVERE"]


def money(value: str) -> str:
    return f"{float(value):,.2f}"


async def test_the_status_page_in_chromium(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, browser: WebDriver
) -> None:
    session: Session = await start_session(
        tmp_path, sandbox, env={**ENV, "TRADINGD_CONTROL_TOKEN": TOKEN}
    )
    daemon = session.daemon
    try:
        await session.step(12)
        await session.settle()
        assert daemon.http is not None
        url = daemon.http.url

        # It loads, from this server only, with no console error.
        await off_loop(lambda: browser.get(url + "/"))
        await off_loop(lambda: until(browser, lambda d: d.find_element(By.ID, "h-link").text))
        await off_loop(lambda: until(browser, lambda d: page_text(d, "h-link") == "live"))

        # Its numbers are /state's (after the last slice's push).
        state = await state_of(url)
        await off_loop(
            lambda: until(
                browser,
                lambda d: (
                    d.find_element(By.TAG_NAME, "body").get_attribute("data-last-slice")
                    == state["last_slice"]
                ),
            )
        )
        assert await off_loop(lambda: page_text(browser, "equity-now")) == money(
            state["account"]["equity"]
        )
        assert state["positions"], "the recorder strategy holds every symbol"
        shown = await off_loop(lambda: table(browser, "positions"))
        assert {row[0]: float(row[1]) for row in shown} == {
            symbol: float(p["qty"]) for symbol, p in state["positions"].items()
        }
        assert await off_loop(lambda: page_text(browser, "h-mode")) == "paper"
        assert await off_loop(lambda: page_text(browser, "h-halted")) == "trading"
        fills = await off_loop(lambda: table(browser, "fills"))
        assert fills
        assert fills[0][0] != "none yet"

        # A slice closes: the page follows.
        before = state["last_slice"]
        await session.step(1)
        after = (await state_of(url))["last_slice"]
        assert after != before
        await off_loop(
            lambda: until(
                browser,
                lambda d: (
                    d.find_element(By.TAG_NAME, "body").get_attribute("data-last-slice") == after
                ),
            )
        )
        points = await off_loop(
            lambda: browser.execute_script(
                "return document.querySelector('#equity-chart path').getAttribute('d')"
            )
        )
        assert str(points).count("L") >= 6  # a curve of every slice since the start

        # The picture (the README's, when TRADINGD_SCREENSHOT names it).
        shot = Path(os.environ.get("TRADINGD_SCREENSHOT", tmp_path / "status-page.png"))
        await off_loop(lambda: browser.save_screenshot(str(shot)))
        assert shot.stat().st_size > 10_000

        assert await off_loop(lambda: severe(browser)) == []

        # A wrong token is refused and shown; the right one halts the daemon.
        def halt_with(token: str) -> str:
            field = browser.find_element(By.ID, "token")
            field.clear()
            field.send_keys(token)
            browser.find_element(By.ID, "do-halt").click()
            return str(
                until(
                    browser,
                    lambda d: (t := page_text(d, "control-result")) and not t.endswith("…") and t,
                )
            )

        refused = await off_loop(lambda: halt_with("not-the-token"))
        assert refused.startswith("halt refused (401)"), refused
        assert daemon.state()["halted"] is False
        assert await off_loop(lambda: halt_with(TOKEN)) == "halt: done"
        assert daemon.state()["halted"] is True
        await off_loop(lambda: until(browser, lambda d: page_text(d, "h-halted") == "HALTED"))

        # Nothing but this server was asked for; nothing went wrong in the page.
        urls = await off_loop(lambda: requested_urls(browser))
        assert urls
        assert [u for u in urls if not u.startswith(url + "/")] == []
        # The refused halt is the one error, logged by the browser as a failed request.
        errors = [e["message"] for e in await off_loop(lambda: severe(browser))]
        assert len(errors) == 1, errors
        assert errors[0].startswith(url + "/halt - "), errors
        assert "401" in errors[0], errors

        # The page closes: the daemon stops pushing to it.
        page = daemon.http.page
        assert page.open_pages == 1
        await off_loop(lambda: browser.get("about:blank"))
        async with asyncio.timeout(WAIT_S):
            while page.open_pages:
                await asyncio.sleep(0.05)  # polled with a deadline: the end is the next push
    finally:
        assert await session.stop() == 0
