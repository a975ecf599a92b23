"""Strict validation of the ingest body.

Every known field is checked for type and range; unknown fields are ignored so
that newer agents keep working against an older server. The first problem found
becomes one line naming the field, e.g.
`sample.gpus[1].memory_percent: must be between 0 and 100`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import catalogue

MAX_GPUS = 64
MAX_DISKS = 256
MAX_PROCESSES = 1024
MAX_LABELS = 64


class SampleError(ValueError):
    """A body that cannot be stored; str() is the one-line message for the client."""


@dataclass
class Sample:
    collected_at: datetime | None
    host: dict[str, Any]
    gpus: list[dict[str, Any]]
    disks: list[dict[str, Any]]
    agent: dict[str, Any] = field(default_factory=dict)


# --- field checkers: each takes (path, value) and returns the clean value or raises ---


def _fail(path: str, message: str):
    raise SampleError(f"{path}: {message}")


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(path, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        _fail(path, "must be a finite number")
    if abs(value) > 1e15:
        _fail(path, "is out of range")
    return float(value)


def _integer(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(path, "must be an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            _fail(path, "must be an integer")
        value = int(value)
    if value > catalogue.MAX_BIGINT:
        _fail(path, "is too large")
    return value


def counter(path: str, value: Any) -> int:
    number = _integer(path, value)
    if number < 0:
        _fail(path, "must be 0 or more")
    return number


def _ranged(low: float | None, high: float | None) -> Callable[[str, Any], float]:
    """A number within [low, high]; either side may be open."""

    def check(path: str, value: Any) -> float:
        number = _number(path, value)
        if high is None and low is not None and number < low:
            _fail(path, f"must be {low:g} or more")
        if high is not None and not (low if low is not None else -math.inf) <= number <= high:
            _fail(path, f"must be between {low:g} and {high:g}")
        return number

    return check


def _whole(high: int) -> Callable[[str, Any], int]:
    """A whole number from 0 to the largest its column holds."""

    def check(path: str, value: Any) -> int:
        number = counter(path, value)
        if number > high:
            _fail(path, "is too large")
        return number

    return check


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def valid_unicode(value: str) -> str:
    """Lone surrogates (a name that was not valid UTF-8 on the node, sent as a `\\udcff`
    escape) and NUL become U+FFFD: PostgreSQL's text and jsonb hold neither."""
    return _UNSTORABLE.sub("\ufffd", value)


def text(limit: int) -> Callable[[str, Any], str]:
    """Text is lenient (one odd name never costs a sample); numbers stay strict."""

    def check(path: str, value: Any) -> str:
        if not isinstance(value, str):
            _fail(path, "must be a string")
        if len(value) > limit:
            _fail(path, f"must be at most {limit} characters")
        return valid_unicode(value)

    return check


def string_list(limit: int, item_limit: int) -> Callable[[str, Any], list[str]]:
    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            _fail(path, "must be a list")
        if len(value) > limit:
            _fail(path, f"must have at most {limit} items")
        return [text(item_limit)(f"{path}[{i}]", item) for i, item in enumerate(value)]

    return check


def _process(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, "must be an object")
    fields = {
        "pid": counter,
        "name": text(256),
        "user": text(128),
        "used_memory_bytes": counter,
        "type": text(16),
    }
    clean = _fields(path, value, fields)
    if clean.get("pid") is None:
        _fail(f"{path}.pid", "is required")
    return clean


def _processes(path: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        _fail(path, "must be a list")
    if len(value) > MAX_PROCESSES:
        _fail(path, f"must have at most {MAX_PROCESSES} items")
    return [_process(f"{path}[{i}]", item) for i, item in enumerate(value)]


def _checker(metric: catalogue.Metric) -> Callable[[str, Any], Any]:
    if metric.kind in ("percent", "gauge"):
        return _ranged(*metric.bounds)
    if metric.kind in ("integer", "counter"):
        return _whole(metric.bounds[1])
    if metric.kind == "text":
        return text(metric.length)
    if metric.kind == "names":
        return string_list(32, 64)
    if metric.kind == "processes":
        return _processes
    raise ValueError(f"{metric.name}: an agent does not send {metric.kind} metrics")


def _checkers(block: str) -> dict[str, Callable[[str, Any], Any]]:
    """What an agent may send of one block, each with its check (derived metrics are ingest's)."""
    return {m.name: _checker(m) for m in catalogue.block(block, derived=False)}


HOST_FIELDS = _checkers("host")
GPU_FIELDS = _checkers("gpu")
DISK_FIELDS = _checkers("disk")


def _fields(path: str, obj: dict, checkers: dict[str, Callable[[str, Any], Any]]) -> dict[str, Any]:
    """Check the known fields of obj; null is allowed for every one (a value the node could not read)."""
    clean = {}
    for name, check in checkers.items():
        value = obj.get(name)
        clean[name] = None if value is None else check(f"{path}.{name}", value)
    return clean


def parse_timestamp(path: str, value: Any) -> datetime:
    if not isinstance(value, str):
        _fail(path, "must be an ISO 8601 timestamp string")
    text_value = value.strip()
    if text_value.endswith(("Z", "z")):
        text_value = text_value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text_value)
    except ValueError:
        _fail(path, f"is not an ISO 8601 timestamp: {value[:40]!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        _fail(path, "must include a timezone offset, e.g. 2026-02-26T02:37:49+00:00")
    if not 2000 <= moment.year <= 9000:
        _fail(path, "is out of range")
    return moment


def _items(path: str, value: Any, limit: int) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, "must be a list")
    if len(value) > limit:
        _fail(path, f"must have at most {limit} items")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            _fail(f"{path}[{i}]", "must be an object")
    return value


def _gpus(path: str, value: Any) -> list[dict[str, Any]]:
    gpus, seen = [], set()
    for i, item in enumerate(_items(path, value, MAX_GPUS)):
        where = f"{path}[{i}]"
        if item.get("gpu_index") is None:
            _fail(f"{where}.gpu_index", "is required")
        index = counter(f"{where}.gpu_index", item["gpu_index"])
        if index > 1023:
            _fail(f"{where}.gpu_index", "must be at most 1023")
        if index in seen:
            _fail(f"{where}.gpu_index", f"duplicates GPU {index}")
        seen.add(index)
        gpus.append({"gpu_index": index, **_fields(where, item, GPU_FIELDS)})
    return gpus


def _disks(path: str, value: Any) -> list[dict[str, Any]]:
    disks, seen = [], set()
    for i, item in enumerate(_items(path, value, MAX_DISKS)):
        where = f"{path}[{i}]"
        device = item.get("device")
        if device is None:
            _fail(f"{where}.device", "is required")
        device = text(64)(f"{where}.device", device).strip()
        if not device:
            _fail(f"{where}.device", "must not be empty")
        if device in seen:
            _fail(f"{where}.device", f"duplicates disk {device!r}")
        seen.add(device)
        disks.append({"device": device, **_fields(where, item, DISK_FIELDS)})
    return disks


def _labels(path: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        _fail(path, "must be an object of string values")
    if len(value) > MAX_LABELS:
        _fail(path, f"must have at most {MAX_LABELS} entries")
    return {text(64)(f"{path} key", key): text(256)(f"{path}.{key}", item) for key, item in value.items()}


AGENT_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "version": text(64),
    "hostname": text(255),
    "platform": text(255),
    "python": text(64),
    "labels": _labels,
}


def _reject_constant(name: str):
    raise SampleError(f"body: invalid JSON: {name} is not allowed")


def parse_body(raw: bytes) -> Sample:
    """Parse and validate an ingest body (either form of the contract)."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except SampleError:
        raise
    except (ValueError, RecursionError) as exc:
        raise SampleError(f"body: invalid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise SampleError("body: must be a JSON object")

    if "sample" in body:
        sample, agent, path = body["sample"], body.get("agent"), "sample"
        if not isinstance(sample, dict):
            raise SampleError("sample: must be an object")
        if agent is not None and not isinstance(agent, dict):
            raise SampleError("agent: must be an object")
    else:
        # The minimal form: the body is the sample itself.
        sample, agent, path = body, None, "sample"

    collected_at = sample.get("collected_at")
    moment = None if collected_at is None else parse_timestamp(f"{path}.collected_at", collected_at)
    host = _fields(path, sample, HOST_FIELDS)
    gpus = _gpus(f"{path}.gpus", sample.get("gpus"))
    disks = _disks(f"{path}.disks", sample.get("disks"))
    if all(v is None for v in host.values()) and not gpus and not disks:
        raise SampleError(f"{path}: has none of the known metric fields")
    agent_clean = {}
    if agent:
        agent_clean = {k: v for k, v in _fields("agent", agent, AGENT_FIELDS).items() if v is not None}
    return Sample(collected_at=moment, host=host, gpus=gpus, disks=disks, agent=agent_clean)


def check_not_in_future(sample: Sample, now: datetime, tolerance_seconds: int) -> None:
    if sample.collected_at is not None and sample.collected_at > now + timedelta(seconds=tolerance_seconds):
        raise SampleError(
            f"sample.collected_at: is more than {tolerance_seconds} s in the future; check the node's clock"
        )
