"""One sample's checks beyond what msgspec's types say (body.py decodes against those types).

What no single field can say: GPU indexes and disk devices unique, a device of only spaces, a
sample without any metric; the timestamp (Python's ISO 8601 reader, an offset required, not in
the future) and the agent's labels (an error names the label, which msgspec's path does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from .. import catalogue
from . import schema


class SampleError(ValueError):
    """A body that cannot be stored; str() is the one-line message for the client."""


@dataclass
class Sample:
    collected_at: datetime | None
    host: dict[str, Any]
    gpus: list[dict[str, Any]]
    disks: list[dict[str, Any]]
    agent: dict[str, Any] = field(default_factory=dict)


def _fail(path: str, message: str):
    raise SampleError(f"{path}: {message}")


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


EVENT_FIELDS = tuple(m.name for m in catalogue.block("gpu") if m.kind == "events")


def _check_gpus(gpus: list[dict[str, Any]]) -> None:
    seen = set()
    for i, gpu in enumerate(gpus):
        index = gpu["gpu_index"]
        if index in seen:
            _fail(f"sample.gpus[{i}].gpu_index", f"duplicates GPU {index}")
        seen.add(index)
        for name in EVENT_FIELDS:
            for j, event in enumerate(gpu[name] or ()):
                event["at"] = parse_timestamp(f"sample.gpus[{i}].{name}[{j}].at", event["at"])
        for j, process in enumerate(gpu.get("processes") or ()):
            if process["workload"] is not None:
                _check_workload(f"sample.gpus[{i}].processes[{j}].workload", process["workload"])


def _check_workload(path: str, workload: dict[str, Any]) -> None:
    workload["id"] = workload["id"].strip()
    if not workload["id"]:
        _fail(f"{path}.id", "must not be empty")
    if workload["labels"] is not None:
        check_labels(workload["labels"], f"{path}.labels", schema.MAX_WORKLOAD_LABELS)


def _check_disks(disks: list[dict[str, Any]]) -> None:
    seen = set()
    for i, disk in enumerate(disks):
        device = disk["device"] = disk["device"].strip()
        if not device:
            _fail(f"sample.disks[{i}].device", "must not be empty")
        if device in seen:
            _fail(f"sample.disks[{i}].device", f"duplicates disk {device!r}")
        seen.add(device)


def check_labels(value: dict[str, Any], path: str = "agent.labels", most: int = schema.MAX_LABELS) -> dict[str, str]:
    """Labels (the agent's, a workload's): at most `most` strings, keys of up to 64 characters and
    values of up to 256."""
    if len(value) > most:
        _fail(path, f"must have at most {most} entries")
    for key, item in value.items():
        if len(key) > 64:
            _fail(f"{path} key", "must be at most 64 characters")
        if not isinstance(item, str):
            _fail(f"{path}.{key}", "must be a string")
        if len(item) > 256:
            _fail(f"{path}.{key}", "must be at most 256 characters")
    return value


def build_sample(sample) -> Sample:
    """A decoded sample's checks beyond single fields, and its parts."""
    moment = None if sample.collected_at is None else parse_timestamp("sample.collected_at", sample.collected_at)
    # What is left of the sample's fields once the lists and the timestamp are out: the host's.
    host = msgspec.to_builtins(sample)
    del host["collected_at"]
    gpus, disks = host.pop("gpus") or [], host.pop("disks") or []
    _check_gpus(gpus)
    _check_disks(disks)
    if all(v is None for v in host.values()) and not gpus and not disks:
        raise SampleError("sample: has none of the known metric fields")
    return Sample(collected_at=moment, host=host, gpus=gpus, disks=disks)


def check_not_in_future(sample: Sample, now: datetime, tolerance_seconds: int) -> None:
    if sample.collected_at is not None and sample.collected_at > now + timedelta(seconds=tolerance_seconds):
        raise SampleError(
            f"sample.collected_at: is more than {tolerance_seconds} s in the future; check the node's clock"
        )
