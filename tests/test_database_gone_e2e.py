"""A database that is gone, on real gunicorn: every path answers 503 at once (JSON under /api/,
a plain page elsewhere), /healthz says which part is down, and service comes back with the
database. Gone three ways: a port where nothing listens, a server stopped mid-run (a proxy in
front of the test database closes every connection and stops listening), and a silent one."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests import samples
from tests.conftest import eventually, free_port, make_user, process_env, register

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A refused connection is answered within this long.
PROMPT_SECONDS = 1.0
API_GETS = [
    "/api/servers/",
    "/api/metrics/latest/",
    "/api/metrics/history/",
    "/api/alerts/",
    "/api/fleet/report/",
    "/api/workloads/",
]
PAGES = ["/", "/admin/"]


class Door:
    """A TCP proxy to the test database that can be shut: its connections cut, its port closed."""

    def __init__(self):
        db = settings.DATABASES["default"]
        self.target = (db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def url(self) -> str:
        db = settings.DATABASES["default"]
        return f"postgres://{db['USER']}:{db['PASSWORD']}@127.0.0.1:{self.port}/{db['NAME']}"

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def shut(self) -> None:
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def door():
    door = Door()
    door.open()
    yield door
    door.shut()


@pytest.fixture
def cookies():
    client = Client()
    client.force_login(make_user("alice@example.com"))
    return {"sessionid": client.cookies["sessionid"].value}


def timed(method: str, url: str, **kwargs) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def assert_every_path_is_503(base: str, node, cookies: dict, within: float) -> None:
    # A new web worker imports its views on its first request: that time is not the database's.
    assert requests.get(base + "/api/no-such-endpoint/", timeout=30).status_code == 404
    body = samples.body(samples.now_minus(5))
    calls = [("GET", path, {"cookies": cookies}) for path in API_GETS]
    calls.append(("POST", f"/api/ingest/servers/{node.slug}/metrics/", {"json": body, "headers": node.headers}))
    for method, path, kwargs in calls:
        response, took = timed(method, base + path, **kwargs)
        assert response.status_code == 503, (path, response.status_code, response.text[:200])
        assert response.json() == {"ok": False, "error": "the database is unavailable; retry later"}, path
        assert int(response.headers["Retry-After"]) > 0
        assert took < within, (path, took)
    for path in [*PAGES, "/accounts/login/"]:
        response, took = timed("GET", base + path, cookies=cookies, allow_redirects=False)
        assert response.status_code == 503, (path, response.status_code)
        assert response.headers["Content-Type"].startswith("text/html") and "Database unreachable" in response.text
        assert took < within, (path, took)
    csrf = "a" * 32  # a token of the browser's own, sent as cookie and header (the form's would be the same)
    response, took = timed(
        "POST",
        base + "/accounts/login/",
        data={"login": "alice@example.com", "password": "x"},
        cookies={"csrftoken": csrf},
        headers={"X-CSRFToken": csrf},
        allow_redirects=False,
    )
    assert response.status_code == 503 and took < within
    health, took = timed("GET", base + "/healthz")
    assert health.status_code == 503 and took < within
    assert health.json()["database"] == "down" and health.json()["broker"] == "up"
    assert health.json()["error"].startswith("the database is unavailable: ")


def web_env(database_url: str) -> dict:
    return process_env(
        DATABASE_URL=database_url, MONITORING_PASSWORD_LOGIN="1", MONITORING_ALLOWED_EMAILS="alice@example.com"
    )


@pytest.fixture
def node():
    node = register("gpu-box-01", "GPU Box 01")
    node.headers = {"X-Monitoring-Token": node.token}
    return node


def test_a_port_where_nothing_listens_gets_503s_at_once(processes, node, cookies):
    closed = f"postgres://trainwatch:trainwatch@127.0.0.1:{free_port()}/trainwatch"
    base = processes.web(web_env(closed), workers=1)
    assert_every_path_is_503(base, node, cookies, within=PROMPT_SECONDS)


def test_a_server_stopped_mid_run_gets_503s_at_once_and_service_comes_back(processes, door, node, cookies):
    base = processes.web(web_env(door.url()), workers=1)
    assert requests.get(base + "/api/servers/", cookies=cookies, timeout=10).status_code == 200
    assert requests.get(base + "/healthz", timeout=10).json()["database"] == "up"
    door.shut()
    assert_every_path_is_503(base, node, cookies, within=PROMPT_SECONDS)
    door.open()
    eventually(
        lambda: requests.get(base + "/api/servers/", cookies=cookies, timeout=30).status_code == 200,
        timeout=60,
        message="the dashboard API answering again",
    )
    response = requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/", json=samples.body(), headers=node.headers, timeout=30
    )
    assert response.status_code == 200


def test_a_silent_database_gets_503s_within_the_connect_timeout(processes, node, cookies):
    silent = socket.create_server(("127.0.0.1", 0), backlog=1)  # listens, never accepts or answers
    with silent:
        port = silent.getsockname()[1]
        url = f"postgres://trainwatch:trainwatch@127.0.0.1:{port}/trainwatch?connect_timeout=2"
        base = processes.web(web_env(url), workers=1)
        response, took = timed("GET", base + "/api/servers/", cookies=cookies)
        assert response.status_code == 503 and response.json()["ok"] is False
        assert took < 2 + 1.5, took
        health, took = timed("GET", base + "/healthz")
        assert health.status_code == 503 and health.json()["database"] == "down" and took < 2 + 1.5
