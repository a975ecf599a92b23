"""Posting one sample to the ingest API, and what the answer means for that sample.

    POST {url}/api/ingest/servers/{slug}/metrics/
    X-Monitoring-Token: <token>
    {"sample": {...}, "agent": {"version", "hostname", "platform", "python", "labels"}}

One requests.Session for the agent's lifetime (the connection is reused where the
server keeps it open). Every answer becomes an Outcome:

- SENT: 2xx, the server stored it (or had it already: a resend is harmless).
- REFUSED: 400/413/422, the server will refuse this sample forever: drop it.
- RETRY: no answer, a timeout, 408/425/429 or 5xx: keep it and try again later,
  after Retry-After when the server sent one.
- CONFIG: 401/403/404 and anything else unexpected (a redirect, another 4xx): the
  agent's settings or the server's registration are wrong; keep the sample, so that
  nothing is lost once that is fixed.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from trainwatch_agent import __version__, values

SENT, REFUSED, RETRY, CONFIG = "sent", "refused", "retry", "config"
MAX_RETRY_AFTER = 3600.0
CONNECT_TIMEOUT = 3.05


@dataclass
class Outcome:
    kind: str
    status: int | None = None
    message: str = ""
    retry_after: float | None = None


def agent_info(labels: dict[str, str]) -> dict[str, Any]:
    """The `agent` block: who sent the sample (the server shows it on the server's page)."""
    return {
        "version": __version__,
        "hostname": values.text(socket.gethostname(), 255),
        "platform": values.text(platform.platform(), 255),
        "python": values.text(platform.python_version(), 64),
        "labels": dict(labels),
    }


def encode(sample: dict[str, Any], agent: dict[str, Any]) -> bytes:
    # Every string the server receives passes here: undecodable names become valid Unicode.
    body = values.valid_unicode({"sample": sample, "agent": agent})
    # allow_nan=False: the server refuses NaN/Infinity, and the collectors never produce them.
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class Transport:
    def __init__(self, url: str, token: str, agent: dict[str, Any], timeout: float = 10.0) -> None:
        self.url = url
        self.agent = agent
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self.session = requests.Session()
        self.session.headers.update(
            {
                "X-Monitoring-Token": token,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"trainwatch-agent/{__version__}",
            }
        )
        # Read the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) once, here: with trust_env
        # requests would scan it, and look for ~/.netrc, on every single post.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle

    def close(self) -> None:
        self.session.close()

    def send(self, sample: dict[str, Any]) -> Outcome:
        try:
            body = encode(sample, self.agent)
        except ValueError as exc:
            return Outcome(REFUSED, None, f"cannot encode the sample: {exc}")
        try:
            response = self.session.post(self.url, data=body, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            return Outcome(RETRY, None, f"no answer within {self.timeout[1]:g} s")
        except requests.ConnectionError as exc:
            return Outcome(RETRY, None, f"cannot connect to {self.url}: {_reason(exc)}")
        except requests.RequestException as exc:
            return Outcome(RETRY, None, f"request failed: {_reason(exc)}")
        return classify(response.status_code, response.headers, response.content)


def classify(status: int, headers: Any, content: bytes) -> Outcome:
    if 200 <= status < 300:
        return Outcome(SENT, status)
    message = f"HTTP {status}: {_error_text(content)}"
    if status in (400, 413, 422):
        return Outcome(REFUSED, status, message)
    if status in (408, 425, 429) or status >= 500:
        return Outcome(RETRY, status, message, retry_after=parse_retry_after(headers.get("Retry-After")))
    if 300 <= status < 400:
        location = headers.get("Location", "")
        message = f"HTTP {status}: redirected to {location!r}; set --url to the address that answers directly"
    return Outcome(CONFIG, status, message)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds (either delta-seconds or an HTTP date), within 0..1 hour; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def _error_text(content: bytes) -> str:
    """The server's one-line error ({"ok": false, "error": "..."}), or the start of whatever it said."""
    text = content[:2000].decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"][:300]
    return " ".join(text.split())[:200] or "(empty answer)"


def _reason(exc: Exception) -> str:
    # requests wraps urllib3 wraps socket errors; the innermost message is the useful one.
    inner: BaseException = exc
    while True:
        nested = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None
        nested = nested or getattr(inner, "reason", None)
        if not isinstance(nested, BaseException) or nested is inner:
            break
        inner = nested
    text = str(inner)
    # "<urllib3.connection.HTTPConnection object at 0x...>: Failed to establish ..." -> the part after ': '
    if "object at 0x" in text and ": " in text:
        text = text.split(": ", 1)[1]
    return text[:200]
