"""Posting samples to the ingest API, and what the answer means for each sample.

    POST {url}/api/ingest/servers/{slug}/metrics/
    X-Monitoring-Token: <token>
    {"sample": {...}, "agent": {"version", "packaging", "hostname", "platform", "python", "labels"}}

or, for many samples in one request (`send_batch`), the batch form:

    {"samples": [{...}, ...], "agent": {...}}

A body larger than GZIP_MIN_BYTES goes gzip-compressed (`Content-Encoding: gzip`). A
server that cannot read compressed bodies answers 400 without the batch fields; the
body is then sent again uncompressed, and when that one is taken, compression stays off
for the rest of the agent's life.

One requests.Session for the agent's lifetime (the connection is reused where the
server keeps it open). Every answer becomes an Outcome:

- SENT: 2xx, the server stored it (or had it already: a resend is harmless). For a
  batch, the answer counts the samples accepted and duplicate, and names the refused
  ones by index.
- REFUSED: 400/413/422, the server will refuse this sample forever: drop it. For a
  batch: 400 with the batch fields, every sample of it refused.
- RETRY: no answer, a timeout, 408/425/429 or 5xx: keep it and try again later,
  after Retry-After when the server sent one.
- CONFIG: 401/403/404 and anything else unexpected (a redirect, another 4xx): the
  agent's settings or the server's registration are wrong; keep the sample, so that
  nothing is lost once that is fixed.

Two more, for batches only:

- TOO_LARGE: 413, the batch is over the server's limit: send fewer samples at a time.
- UNSUPPORTED: 400 (or 2xx) without the batch fields: the server does not take batches
  (an older server, or batches turned off); send the samples one at a time.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from trainwatch_agent import __version__, values
from trainwatch_agent.packaging import packaging

log = logging.getLogger(__name__)

SENT, REFUSED, RETRY, CONFIG = "sent", "refused", "retry", "config"
TOO_LARGE, UNSUPPORTED = "too_large", "unsupported"
MAX_RETRY_AFTER = 3600.0
CONNECT_TIMEOUT = 3.05
# Bodies larger than this are gzip-compressed; a single sample without GPUs stays plain JSON.
GZIP_MIN_BYTES = 4096
# Level 1: samples are repetitive JSON, and it takes a fraction of the CPU of the default level 6.
GZIP_LEVEL = 1


@dataclass
class Outcome:
    kind: str
    status: int | None = None
    message: str = ""
    retry_after: float | None = None
    # A batch's samples the server refused (or that could not be encoded): (index, error).
    refused: list[tuple[int, str]] = field(default_factory=list)
    # A batch's samples the server stored now, and those it had already (as it counted them).
    accepted: int = 0
    duplicates: int = 0


def agent_info(labels: dict[str, str]) -> dict[str, Any]:
    """The `agent` block: who sent the sample (the server shows it on the server's page)."""
    return {
        "version": __version__,
        "packaging": packaging(),
        "hostname": values.text(socket.gethostname(), 255),
        "platform": values.text(platform.platform(), 255),
        "python": values.text(platform.python_version(), 64),
        "labels": dict(labels),
    }


def _json_bytes(value: Any) -> bytes:
    # Every string the server receives passes here: undecodable names become valid Unicode.
    # allow_nan=False: the server refuses NaN/Infinity, and the collectors never produce them.
    return json.dumps(values.valid_unicode(value), separators=(",", ":"), allow_nan=False).encode()


def encode(sample: dict[str, Any], agent: dict[str, Any]) -> bytes:
    return _json_bytes({"sample": sample, "agent": agent})


def encode_batch(
    samples: list[dict[str, Any]], agent: dict[str, Any]
) -> tuple[bytes, list[int], list[tuple[int, str]]]:
    """The batch body; the indexes (into `samples`) of the samples it holds, in order; and the
    samples left out because they cannot be encoded, as (index, error)."""
    parts, kept, bad = [], [], []
    for index, sample in enumerate(samples):
        try:
            parts.append(_json_bytes(sample))
        except ValueError as exc:
            bad.append((index, f"cannot encode the sample: {exc}"))
        else:
            kept.append(index)
    body = b'{"samples":[' + b",".join(parts) + b'],"agent":' + _json_bytes(agent) + b"}"
    return body, kept, bad


class Transport:
    def __init__(self, url: str, token: str, agent: dict[str, Any], timeout: float = 10.0) -> None:
        self.url = url
        self.agent = agent
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        # False once the server showed that it cannot read compressed bodies.
        self.gzip = True
        self._gzip_works = False  # the server has taken a compressed body
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
        """Post one sample (the single form)."""
        try:
            body = encode(sample, self.agent)
        except ValueError as exc:
            return Outcome(REFUSED, None, f"cannot encode the sample: {exc}")
        answer = self._post(body)
        if isinstance(answer, Outcome):
            return answer
        return classify(answer.status_code, answer.headers, answer.content)

    def send_batch(self, samples: list[dict[str, Any]]) -> Outcome:
        """Post samples in one request (the batch form); indexes in the outcome are into `samples`."""
        body, kept, bad = encode_batch(samples, self.agent)
        if not kept:
            return Outcome(REFUSED, None, bad[0][1], refused=bad)
        answer = self._post(body)
        if isinstance(answer, Outcome):
            return answer
        outcome = classify_batch(answer.status_code, answer.headers, answer.content, len(kept))
        outcome.refused = sorted(bad + [(kept[index], error) for index, error in outcome.refused])
        return outcome

    def _post(self, body: bytes) -> requests.Response | Outcome:
        """The server's answer to `body`, compressed when large; an Outcome when there was none."""
        if not (self.gzip and len(body) > GZIP_MIN_BYTES):
            return self._request(body, compressed=False)
        answer = self._request(gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), compressed=True)
        if isinstance(answer, Outcome):
            return answer
        if 200 <= answer.status_code < 300 or _batch_fields(answer) is not None:
            self._gzip_works = True  # the server read it
        if self._gzip_works or answer.status_code not in (400, 415):
            return answer
        # Maybe a server that cannot read compressed bodies: the same body once more, plain.
        plain = self._request(body, compressed=False)
        if isinstance(plain, requests.Response) and (
            200 <= plain.status_code < 300 or plain.status_code == 413 or _batch_fields(plain) is not None
        ):
            self.gzip = False
            log.info(
                "the server does not read gzip-compressed bodies (HTTP %d: %s); sending them uncompressed from now on",
                answer.status_code,
                _error_text(answer.content),
            )
        return plain

    def _request(self, body: bytes, compressed: bool) -> requests.Response | Outcome:
        headers = {"Content-Encoding": "gzip"} if compressed else None
        try:
            return self.session.post(self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            return Outcome(RETRY, None, f"no answer within {self.timeout[1]:g} s")
        except requests.ConnectionError as exc:
            return Outcome(RETRY, None, f"cannot connect to {self.url}: {_reason(exc)}")
        except requests.RequestException as exc:
            return Outcome(RETRY, None, f"request failed: {_reason(exc)}")


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


def classify_batch(status: int, headers: Any, content: bytes, count: int) -> Outcome:
    """What the answer to a batch of `count` samples means; `refused` indexes are into the batch."""
    fields = _batch_fields_of(status, content)
    if 200 <= status < 300 or status in (400, 422):
        if fields is None:
            return Outcome(UNSUPPORTED, status, f"HTTP {status}: {_error_text(content)}")
        refused = _refused(fields, count)
        if 200 <= status < 300:
            duplicates = fields.get("duplicates")
            duplicates = duplicates if isinstance(duplicates, int) else 0
            return Outcome(SENT, status, refused=refused, accepted=fields["accepted"], duplicates=duplicates)
        # Every sample refused; an answer that names none of them still refuses them all.
        named = {index for index, _ in refused}
        error = _error_text(content) if not refused else refused[0][1]
        refused += [(index, error) for index in range(count) if index not in named]
        return Outcome(REFUSED, status, f"HTTP {status}: {error}", refused=sorted(refused))
    if status == 413:
        return Outcome(TOO_LARGE, status, f"HTTP {status}: {_error_text(content)}")
    return classify(status, headers, content)


def _batch_fields(response: requests.Response) -> dict[str, Any] | None:
    return _batch_fields_of(response.status_code, response.content)


def _batch_fields_of(status: int, content: bytes) -> dict[str, Any] | None:
    """The answer to a batch (`accepted`, `duplicates`, `refused`), or None when it is not one."""
    if not (200 <= status < 300 or status in (400, 422)) or b'"accepted"' not in content:
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("accepted"), int):
        return None
    return body


def _refused(fields: dict[str, Any], count: int) -> list[tuple[int, str]]:
    """The refused samples a batch answer names, as (index, error); nonsense entries are skipped."""
    refused: dict[int, str] = {}
    entries = fields.get("refused")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        index, error = entry.get("index"), entry.get("error")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count:
            refused.setdefault(index, error[:300] if isinstance(error, str) else "refused")
    return sorted(refused.items())


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
