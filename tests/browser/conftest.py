"""Fixtures of the dashboard's browser tests: Debian's Chromium driven by Playwright, a signed-in
page against pytest-django's live server, and seeded fleets.

Playwright never downloads a browser here: it launches /usr/bin/chromium (`make chromium`).
Each test saves a screenshot under tests/artifacts/ and fails on any console error and on any
Content-Security-Policy violation, logged or not. Give wait_for_function a function
("() => ..."): Playwright polls a bare expression through eval, which the policy refuses."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from monitoring.models import MonitoredServer
from tests import samples
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import PASSWORD, IngestClient, make_user, register

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="package")
def browser(django_db_setup):
    """One Chromium for the browser tests. The test database is made first: Django refuses to
    touch a database beside Playwright's event loop, which its sync API keeps in this thread,
    so that check is off while the browser runs (its ORM calls are all synchronous here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium`")
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


# Runs in every document before its own scripts. Each violation is kept in window.cspViolations
# and handed to the test at once, as the next navigation would lose the window's list.
CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = e.sourceFile ? ` (${e.sourceFile}:${e.lineNumber})` : "";
  const violation = `${e.effectiveDirective} refused ${e.blockedURI || "inline code"} on ${e.documentURI}${where}`;
  window.cspViolations.push(violation);
  if (window.reportCspViolation) window.reportCspViolation(violation);
});
"""


class PolicyViolations:
    """Every Content-Security-Policy violation of a page, whether the browser logs it or not."""

    def __init__(self, page):
        self.page = page
        self.seen: list[str] = []
        page.expose_function("reportCspViolation", self.report)
        page.add_init_script(CSP_LISTENER)

    def report(self, violation: str) -> None:
        self.seen.append(violation)

    def collect(self) -> list[str]:
        """Those reported so far, and any the current document holds that was not yet handed over."""
        with contextlib.suppress(PlaywrightError):
            self.seen.extend(v for v in self.page.evaluate("window.cspViolations || []") if v not in self.seen)
        return self.seen

    def clear(self) -> None:
        self.seen.clear()
        self.page.evaluate("window.cspViolations = []")


@pytest.fixture
def page(browser, live_server, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.console = Console(page)
    page.csp = PolicyViolations(page)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    try:
        violations = page.csp.collect()
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    assert page.console.errors == [], "the page logged errors"
    assert violations == [], "the page broke its Content-Security-Policy"


def sign_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_login", email)
    page.fill("#id_password", PASSWORD)
    page.click("#password-login button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def alice_page(page, transactional_db):
    make_user("alice@example.com")
    sign_in(page, "alice@example.com")
    return page


def seed(slug: str, *, hours: float, interval: int, gpus: int, disks: int) -> MonitoredServer:
    call_command(
        "seed_history",
        slug,
        "--days",
        str(hours / 24),
        "--interval",
        str(interval),
        "--gpus",
        str(gpus),
        "--disks",
        str(disks),
        "--no-progress",
        stdout=StringIO(),
    )
    return MonitoredServer.objects.get(slug=slug)


@pytest.fixture
def fleet(tier_db):
    """gpu-box-01 (2 GPUs, 2 disks) and cpu-node-07 (no GPU, 1 disk), both reporting every 10 s
    for the last 3 hours; old-box last reported 3 hours ago; spare-box never did."""
    gpu_box = seed("gpu-box-01", hours=3, interval=10, gpus=2, disks=2)
    cpu_node = seed("cpu-node-07", hours=3, interval=10, gpus=0, disks=1)
    old = register("old-box", "Old Box")
    long_ago = timezone.now() - timedelta(hours=3)
    response = IngestClient().send(old, {"sample": samples.sample(long_ago, gpus=1, disks=1)})
    assert response.status_code == 200, response.content
    MonitoredServer.objects.filter(pk=old.server.pk).update(last_seen_at=long_ago)
    spare = register("spare-box", "Spare Box")
    return {"gpu": gpu_box, "cpu": cpu_node, "old": old.server, "spare": spare.server}


# --- what the page shows ----------------------------------------------------------------------


def wait_drawn(page, count: int = 1) -> None:
    """Until the charts have drawn new history `count` times since the page loaded."""
    page.wait_for_function("n => window.trainwatch && window.trainwatch.drawCount >= n", arg=count)


def chart_lengths(page) -> dict[str, int]:
    return page.evaluate("window.trainwatch.lengths()")


def history_requests(page) -> list[dict]:
    return [r["params"] for r in page.evaluate("window.trainwatch.requests") if r["path"] == "/api/metrics/history/"]


def fleet_states(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "#fleet li[data-slug]", "items => Object.fromEntries(items.map(li => [li.dataset.slug, li.dataset.state]))"
    )
