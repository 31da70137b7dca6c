"""GET /dashboard in a real browser: Debian's headless Chromium, driven by Playwright,
against a real `contender serve` (SPEC section 3).

Every wait polls the page with a deadline; nothing waits on a fixed sleep. The test
also takes a screenshot of the page (docs/dashboard.png with CONTENDER_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

from tests.integration import models
from tests.integration.conftest import STAGES_MODEL, Registered, Service, ServiceFactory
from tests.support import poll_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_CHROMIUM = "apt-get update -qq && apt-get install -y -qq chromium"
# No network but the service's, no updates, no first-run work: the page's requests only.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).parents[2] / "docs" / "dashboard.png"
TOKEN = "dashboard-token"
ONE_ROW = {"dataframe_split": {"columns": models.FEATURES, "data": [[0.1, -0.4, 1.2, 0.3]]}}
# The page polls every 3 s; a busy two-core machine may take a few polls.
PAGE_DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium: installed here when missing and we are root (never a download of
    Playwright's own browsers)."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.fail(f"headless Chromium is missing: run `sudo sh -c '{INSTALL_CHROMIUM}'`")
        subprocess.run(["sh", "-c", INSTALL_CHROMIUM], check=True, timeout=900)
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Problems:
    """What a person would see go wrong: console errors and warnings, script errors,
    failed requests, 4xx/5xx answers, and any request to another host."""

    def __init__(self, page: Page, origin: str) -> None:
        self.seen: list[str] = []
        self._origin = origin
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.seen.append(f"failed: {r.url} {r.failure}"))
        page.on("response", self._response)
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.seen.append(f"console {message.type}: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.seen.append(f"HTTP {response.status}: {response.url}")

    def _request(self, request: Request) -> None:
        if not request.url.startswith((self._origin + "/", "data:")):
            self.seen.append(f"another host: {request.url}")


def text(page: Page, selector: str) -> str:
    return (page.locator(selector).text_content() or "").strip()


def wait_text(page: Page, selector: str, condition: Callable[[str], bool], what: str) -> str:
    def check() -> str | None:
        shown = text(page, selector)
        return shown if condition(shown) else None

    return poll_until(check, timeout_s=PAGE_DEADLINE_S, interval_s=0.2, what=what)


def shown_count(shown: str) -> int:
    """A count the page shows ("1,234"), or -1 for none yet (a dash)."""
    digits = shown.replace(",", "")
    return int(digits) if digits.isdigit() else -1


def send(service: Service, n: int) -> list[tuple[str, str]]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        replies = [http.post("/invocations", json=ONE_ROW) for _ in range(n)]
    assert [reply.status_code for reply in replies] == [200] * n
    return [(reply.json()["served_by"], reply.json()["model_version"]) for reply in replies]


@pytest.mark.usefixtures("forget_routing_tags")
def test_the_dashboard_shows_the_service_live_and_changes_its_routing(
    start_service: ServiceFactory,
    registered: Registered,
    mlflow_url: str,
    browser: Browser,
    tmp_path: Path,
) -> None:
    champion, challenger = registered.versions[STAGES_MODEL]
    service = start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--challenger-weight", "0.2",
        env={"CONTENDER_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems = Problems(page, service.url)
    page.goto(f"{service.url}/dashboard")

    # Both versions, with no token: viewing is open.
    wait_text(page, "#champion-version", lambda v: v == champion, f"champion {champion}")
    assert text(page, "#challenger-version") == challenger
    assert "ago" in text(page, "#champion-loaded")
    assert text(page, "#weight-now") == "0.20"
    before = shown_count(wait_text(page, "#requests-total", lambda v: v != "", "a count"))

    # Traffic moves the numbers.
    served = send(service, 300)
    assert {arm for arm, _ in served} == {"champion", "challenger"}
    shown = wait_text(
        page, "#requests-total", lambda v: shown_count(v) >= before + 300, "300 more requests"
    )
    assert shown_count(shown) == before + 300
    assert float(text(page, "#requests-rate")) > 0
    champion_row = page.locator("#row-champion td")
    assert shown_count(champion_row.nth(1).text_content() or "") == sum(
        arm == "champion" for arm, _ in served
    )
    assert float(champion_row.nth(5).text_content() or "nan") > 0  # p50 ms
    assert text(page, "#agreement").endswith("%")
    for arm in ("champion", "challenger"):  # a line (or a dot) of each arm in each chart
        assert page.locator(f"#chart-rate .series.{arm}").count() >= 1
        assert page.locator(f"#chart-latency .series.{arm}").count() >= 1

    # A routing change from the page: the token typed in, weight 1, Apply.
    page.fill("#token", TOKEN)
    page.fill("#weight", "1")
    page.click("#apply")
    result = wait_text(page, "#routing-result", lambda v: v.startswith("applied"), "applied")
    assert "weight 1" in result
    status = httpx.get(f"{service.url}/status", timeout=10).json()
    assert (status["challenger_weight"], status["testing"]) == (1.0, True)
    assert set(send(service, 40)) == {("challenger", challenger)}
    wait_text(page, "#weight-now", lambda v: v == "1.00", "the new weight on the page")
    wait_text(page, "#requests-total", lambda v: shown_count(v) >= before + 340, "340 requests")

    # The README's picture is refreshed on request only, so a test run leaves the tree clean.
    shot = SCREENSHOT if os.environ.get("CONTENDER_UPDATE_SCREENSHOT") else tmp_path / "page.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert problems.seen == []
    service.stop()
