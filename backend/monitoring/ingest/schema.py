"""The ingest body's shape: rules built from the catalogue, and msgspec structs built from the rules.

A `Rule` says what one field accepts (a number within bounds, a whole number, text of at most so
many characters, a list, an object of fields); msgspec decodes and checks a body against the
structs in one pass in C. When it refuses one, `reason` words the problem from the failing field's
rule and the value that was sent, so every message reads as it always has, e.g.
`must be between 0 and 100`; the path comes from msgspec.

Pure Python, no Django: the benchmarks build their alternatives from the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .. import catalogue

MAX_GPUS = 64
MAX_DISKS = 256
MAX_PROCESSES = 1024
MAX_LABELS = 64
MAX_GPU_INDEX = 1023
MAX_EVENTS = 64  # per GPU and sample: a GPU in an error storm sends its first 64
MAX_WORKLOAD_LABELS = 16
# What a GPU process's workload is: its scheduler's kind (catalogue.WORKLOAD_KINDS).
# Beyond this a number is a unit mix-up or garbage, whatever its field's bounds.
MAX_MAGNITUDE = 1e15
# What a path into the document can reach that is not there (a required field left out).
MISSING = object()


@dataclass(frozen=True)
class Rule:
    """What one field accepts. kind: number, integer, index, bool, text, choice, timestamp, list, object,
    labels."""

    kind: str
    low: float | None = None
    high: float | None = None
    limit: int | None = None  # text: most characters; list: most items
    required: bool = False  # null or left out is refused
    item: Rule | None = None  # list: what each item is
    fields: dict[str, Rule] = field(default_factory=dict)  # object: its known fields
    choices: tuple[str, ...] = ()  # choice: the strings it takes

    def at(self, steps: list[str | int]) -> Rule:
        """The rule of the field a path reaches from here."""
        rule = self
        for step in steps:
            rule = rule.item if isinstance(step, int) else rule.fields[step]
        return rule


def number(low: float | None, high: float | None) -> Rule:
    return Rule("number", low, high)


def whole(high: int = catalogue.MAX_BIGINT, *, required: bool = False) -> Rule:
    return Rule("integer", 0, high, required=required)


def text(limit: int, *, required: bool = False) -> Rule:
    return Rule("text", limit=limit, required=required)


def items(limit: int, item: Rule) -> Rule:
    return Rule("list", limit=limit, item=item)


def obj(fields: dict[str, Rule]) -> Rule:
    return Rule("object", fields=fields)


# The workload a GPU process belongs to (a Slurm job, a pod, a container, a process group).
# Its labels are checked by hand, like the agent's: an error names the label.
WORKLOAD = obj(
    {
        "kind": Rule("choice", required=True, choices=catalogue.WORKLOAD_KINDS),
        "id": text(128, required=True),
        "name": text(256),
        "user": text(128),
        "labels": Rule("labels"),
    }
)
PROCESS = obj(
    {
        "pid": whole(required=True),
        "name": text(256),
        "user": text(128),
        "used_memory_bytes": whole(),
        "type": text(16),
        "workload": WORKLOAD,
    }
)


EVENT = obj({"xid": whole(catalogue.MAX_INTEGER, required=True), "at": Rule("timestamp", required=True)})


def metric_rule(metric: catalogue.Metric) -> Rule:
    if metric.kind in ("percent", "gauge") or (metric.kind == "counter" and not metric.whole):
        return number(*metric.bounds)
    if metric.kind in ("integer", "counter"):
        return whole(metric.bounds[1])
    if metric.kind == "text":
        return text(metric.length)
    if metric.kind == "bool":
        return Rule("bool")
    if metric.kind == "names":
        return items(32, text(64))
    if metric.kind == "processes":
        return items(MAX_PROCESSES, PROCESS)
    if metric.kind == "events":
        return items(MAX_EVENTS, EVENT)
    raise ValueError(f"{metric.name}: an agent does not send {metric.kind} metrics")


def metric_rules(block: str) -> dict[str, Rule]:
    """What an agent may send of one block (derived metrics are ingest's)."""
    return {m.name: metric_rule(m) for m in catalogue.block(block, derived=False)}


HOST = metric_rules("host")
GPU = obj({"gpu_index": Rule("index", 0, MAX_GPU_INDEX, required=True), **metric_rules("gpu")})
DISK = obj({"device": text(64, required=True), **metric_rules("disk")})
SAMPLE = obj(
    {
        "collected_at": Rule("timestamp"),
        **HOST,
        "gpus": items(MAX_GPUS, GPU),
        "disks": items(MAX_DISKS, DISK),
    }
)
AGENT = obj(
    {
        "version": text(64),
        # How the agent was installed: deb, zipapp, container or pip (any word a newer agent sends).
        "packaging": text(32),
        "hostname": text(255),
        "platform": text(255),
        "python": text(64),
        # Checked by hand: msgspec's path does not name the key of a bad entry.
        "labels": Rule("labels"),
    }
)


# --- the wording: what today's contract says for each kind of field ---


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_reason(rule: Rule, value: Any) -> str:
    if not _is_number(value):
        return "must be a number"
    if not math.isfinite(value):
        return "must be a finite number"
    if abs(value) > MAX_MAGNITUDE:
        return "is out of range"
    if rule.high is None:
        return f"must be {rule.low:g} or more"
    return f"must be between {rule.low:g} and {rule.high:g}"


def _integer_reason(rule: Rule, value: Any) -> str:
    if not _is_number(value) or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        return "must be an integer"
    if value < 0:
        return "must be 0 or more"
    if rule.kind == "index" and value <= catalogue.MAX_BIGINT:
        return f"must be at most {rule.high}"
    return "is too large"


def _text_reason(rule: Rule, value: Any) -> str:
    return "must be a string" if not isinstance(value, str) else f"must be at most {rule.limit} characters"


def _list_reason(rule: Rule, value: Any) -> str:
    return "must be a list" if not isinstance(value, list) else f"must have at most {rule.limit} items"


REASONS = {
    "number": _number_reason,
    "integer": _integer_reason,
    "index": _integer_reason,
    "text": _text_reason,
    "bool": lambda rule, value: "must be true or false",
    "choice": lambda rule, value: f"must be one of {', '.join(rule.choices)}",
    "timestamp": lambda rule, value: "must be an ISO 8601 timestamp string",
    "list": _list_reason,
    "object": lambda rule, value: "must be an object",
    "labels": lambda rule, value: "must be an object of string values",
}


def reason(rule: Rule, value: Any) -> str:
    """Why value does not fit rule, in the contract's words."""
    if value is MISSING or (value is None and rule.required):
        return "is required"
    return REASONS[rule.kind](rule, value)


# --- msgspec's types, from the rules ---


def _type(rule: Rule, name: str) -> Any:
    if rule.kind == "number":
        low = -MAX_MAGNITUDE if rule.low is None else max(rule.low, -MAX_MAGNITUDE)
        high = MAX_MAGNITUDE if rule.high is None else min(rule.high, MAX_MAGNITUDE)
        return Annotated[float, Meta(ge=low, le=high)]
    if rule.kind in ("integer", "index"):
        return Annotated[int, Meta(ge=rule.low, le=rule.high)]
    if rule.kind == "text":
        return Annotated[str, Meta(max_length=rule.limit)]
    if rule.kind == "bool":
        return bool
    if rule.kind == "choice":
        return Literal[rule.choices]
    if rule.kind == "timestamp":
        return str  # parsed afterwards: Python's ISO 8601 reader, with an offset required
    if rule.kind == "list":
        return Annotated[list[_type(rule.item, name)], Meta(max_length=rule.limit)]
    if rule.kind == "labels":
        return dict
    return struct(name, rule)


def struct(name: str, rule: Rule) -> type[msgspec.Struct]:
    """A struct of the rule's fields. Null is allowed for every field that is not required (a value
    the node could not read); unknown fields are ignored, so newer agents work with older servers."""
    fields = [
        (key, _type(sub, key.title()), msgspec.NODEFAULT)
        if sub.required
        else (key, _type(sub, key.title()) | None, None)
        for key, sub in rule.fields.items()
    ]
    return msgspec.defstruct(name, fields, kw_only=True)


class Envelope(msgspec.Struct):
    """The recommended form, {"sample": ..., "agent": ...}, or a batch, {"samples": [...],
    "agent": ...}, read without looking inside any of them."""

    sample: msgspec.Raw = msgspec.Raw()
    samples: msgspec.Raw = msgspec.Raw()
    agent: msgspec.Raw = msgspec.Raw()


ENVELOPE = msgspec.json.Decoder(Envelope)
SAMPLE_DECODER = msgspec.json.Decoder(struct("Sample", SAMPLE))
AGENT_DECODER = msgspec.json.Decoder(struct("Agent", AGENT) | None)
