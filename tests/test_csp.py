"""The Content-Security-Policy: every page carries it, Google sign-in fits inside it, and the
pages we serve (ours, allauth's, the admin's) hold nothing it would block: no inline script or
style, no style attributes, no inline event handlers."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.test import Client

from tests.conftest import client_for, register

pytestmark = pytest.mark.django_db

EXPECTED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'"},
    "font-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'"},
    "frame-ancestors": {"'none'"},
    "form-action": {"'self'", "https://accounts.google.com"},
}


def policy(response) -> dict[str, set[str]]:
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        directives[name] = set(sources)
    return directives


class InlineCode(HTMLParser):
    """What a strict policy refuses in a page: inline scripts and styles, style attributes and
    on* handlers. A <script type="application/json"> is data, never run, so it may stay."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and not attrs.get("src") and attrs.get("type") != "application/json":
            self.found.append(f"inline <script> at line {self.getpos()[0]}")
        if tag == "style":
            self.found.append(f"<style> at line {self.getpos()[0]}")
        for name in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{name}= on <{tag}> at line {self.getpos()[0]}")
        if attrs.get("href", "").lower().startswith("javascript:"):
            self.found.append(f"javascript: link at line {self.getpos()[0]}")


def inline_code(response) -> list[str]:
    parser = InlineCode()
    parser.feed(response.content.decode())
    return parser.found


def test_the_dashboard_carries_the_policy(alice):
    response = client_for(alice).get("/")
    assert response.status_code == 200
    assert policy(response) == EXPECTED


def test_the_sign_in_page_carries_the_policy(db):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert policy(response) == EXPECTED


def test_google_sign_in_redirects_where_form_action_allows(db):
    # The sign-in form posts here and is answered with a redirect to Google; browsers refuse a
    # redirect that form-action does not name.
    response = Client().post("/accounts/google/login/?process=login")
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert f"{target.scheme}://{target.netloc}" in EXPECTED["form-action"]


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("anyone", "/accounts/login/"),
        ("anyone", "/accounts/google/login/?process=login"),
        ("alice", "/"),
        ("alice", "/accounts/logout/"),
        ("bob", "/"),
        ("admin", "/admin/"),
        ("admin", "/admin/monitoring/monitoredserver/"),
        ("admin", "/admin/monitoring/monitoredserver/{server}/change/"),
        ("admin", "/admin/monitoring/monitoredserver/add/"),
        ("admin", "/admin/auth/user/add/"),
    ],
)
def test_no_page_holds_code_the_policy_blocks(who, path, request):
    server = register("gpu-box-01", "GPU Box 01").server
    if who == "anyone":
        client = Client()
    elif who == "admin":
        client = request.getfixturevalue("admin_client")
    else:
        client = client_for(request.getfixturevalue(who))
    response = client.get(path.format(server=server.id))
    # bob is signed in but not allowlisted: his page is the 403 one.
    assert response.status_code == (403 if who == "bob" else 200)
    assert "Content-Security-Policy" in response
    assert inline_code(response) == []
