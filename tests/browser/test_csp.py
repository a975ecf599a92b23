"""The Content-Security-Policy in a real browser: the pages carry it, Google sign-in gets through it,
the admin's and allauth's pages work under it, and the fixture's watch catches what it blocks."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_drawn
from tests.conftest import make_user, register
from tests.test_csp import EXPECTED

GOOGLE_PAGE = "<!doctype html><title>Google</title><p id=google>Choose an account</p>"


def policy_of(response) -> dict[str, set[str]]:
    header = response.headers.get("content-security-policy", "")
    return {name: set(sources) for name, *sources in (part.split() for part in header.split(";") if part.strip())}


def test_the_sign_in_page_and_the_dashboard_carry_the_policy(page, fleet):
    assert policy_of(page.goto("/accounts/login/")) == EXPECTED
    make_user("alice@example.com")
    sign_in(page, "alice@example.com")
    response = page.goto("/?server=gpu-box-01")
    assert urlsplit(response.url).path == "/"
    assert policy_of(response) == EXPECTED
    # The charts draw under it (uPlot styles its elements through the CSSOM, which the policy allows).
    wait_drawn(page)


def test_google_sign_in_leaves_for_google_without_a_violation(page, transactional_db):
    # Google itself is out of reach here: the browser is handed a stand-in for its page.
    page.route(
        "https://accounts.google.com/**", lambda route: route.fulfill(body=GOOGLE_PAGE, content_type="text/html")
    )
    page.goto("/accounts/login/")
    page.click("#google-sign-in")
    expect(page.locator("#google")).to_be_visible()
    assert urlsplit(page.url).netloc == "accounts.google.com"


def test_the_watch_records_every_violation_apart_from_the_console(page, transactional_db):
    page.goto("/accounts/login/")
    page.evaluate("document.body.setAttribute('style', 'outline: 1px solid red')")
    page.wait_for_function("() => window.cspViolations.length > 0")
    assert [v for v in page.csp.collect() if v.startswith("style-src-attr refused inline")], page.csp.seen
    # Recorded, the fixture would fail this test; it was made on purpose.
    page.csp.clear()
    page.console.errors.clear()


def no_favicon(page) -> None:
    """The admin's and allauth's pages name no icon: the browser's ask for /favicon.ico (not served,
    a 404 in the console) gets an empty answer."""
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))


ADMIN_PAGES = [
    "/admin/",
    "/admin/monitoring/monitoredserver/",
    "/admin/monitoring/monitoredserver/add/",
    "/admin/auth/user/add/",
]


def test_the_admin_works_under_the_policy(page, transactional_db):
    make_user("root@example.com", is_staff=True, is_superuser=True)
    register("gpu-box-01", "GPU Box 01")
    no_favicon(page)
    sign_in(page, "root@example.com")
    for path in ADMIN_PAGES:
        assert page.goto(path).status == 200, path
        expect(page.locator("#content")).to_be_visible()
    # The admin's own scripts run: selecting every row updates the action counter.
    page.goto("/admin/monitoring/monitoredserver/")
    page.check("#action-toggle")
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")


@pytest.mark.parametrize("path", ["/accounts/logout/", "/accounts/google/login/?process=login"])
def test_allauth_pages_render_under_the_policy(page, transactional_db, path):
    make_user("alice@example.com")
    no_favicon(page)
    sign_in(page, "alice@example.com")
    assert page.goto(path).status == 200
    expect(page.locator("form[method=post]").first).to_be_visible()
