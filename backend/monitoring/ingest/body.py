"""Strict reading of the ingest body: one sample, the minimal form, or a batch.

msgspec checks every known field for type and range against structs built from the catalogue
(`schema.py`); unknown fields are ignored so that newer agents keep working against an older
server. The first problem found becomes one line naming the field, e.g.
`sample.gpus[1].memory_percent: must be between 0 and 100`. What msgspec cannot say is checked
after it, in validation.py.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import msgspec

from . import schema
from .validation import Sample, SampleError, build_sample, check_labels, check_not_in_future

# The JSON escapes of NUL and of a lone surrogate. A surrogate pair is one character and stays;
# any other escape is matched whole so that an escaped backslash followed by `u0000` stays text.
_UNSTORABLE_ESCAPE = re.compile(
    rb"\\(?:u(?:[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|([dD][89a-fA-F][0-9a-fA-F]{2}|0000))|.)",
    re.S,
)


def _storable(raw: bytes) -> bytes:
    """Text is lenient (one odd name never costs a sample), so NUL and lone surrogates become
    U+FFFD, in the JSON itself: msgspec refuses a lone surrogate where Python's json reads it."""
    # One byte first: memchr finds it (or not) ten times as fast as a two-byte search.
    if b"\\" not in raw or b"\\u" not in raw:
        return raw
    return _UNSTORABLE_ESCAPE.sub(lambda m: b"\\ufffd" if m[1] else m[0], raw)


class _Refused(Exception):
    """msgspec refused one part of the body; `keys` lead from the whole document to that part."""

    def __init__(self, part: str, keys: tuple[str, ...], error: Exception):
        self.part, self.keys, self.error = part, keys, error


# A ValidationError is a DecodeError; text that is not UTF-8 shows only when a string is read.
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _decode(part: str, keys: tuple[str, ...], decoder: msgspec.json.Decoder, raw) -> Any:
    try:
        return decoder.decode(raw)
    except _UNREADABLE as exc:
        raise _Refused(part, keys, exc) from None


def _agent(raw) -> dict[str, Any]:
    agent = _decode("agent", ("agent",), schema.AGENT_DECODER, raw) if raw else None
    if agent is None:
        return {}
    clean = {k: v for k, v in msgspec.structs.asdict(agent).items() if v is not None}
    if "labels" in clean:
        clean["labels"] = check_labels(clean["labels"])
    return clean


def _parse(raw: bytes, envelope: schema.Envelope | None = None) -> Sample:
    """The body's sample and agent, or _Refused / SampleError; `envelope`: raw's, decoded already."""
    if envelope is None:
        try:
            envelope = schema.ENVELOPE.decode(raw)
        except _UNREADABLE as exc:
            raise _Refused("body", (), exc) from None
    if not envelope.sample:
        # The minimal form: the body is the sample itself.
        return _parse_sample(raw)
    agent = envelope.agent
    if agent and bytes(memoryview(agent)[:1]) not in (b"{", b"n"):
        raise SampleError("agent: must be an object")
    sample = build_sample(_decode("sample", ("sample",), schema.SAMPLE_DECODER, envelope.sample))
    sample.agent = _agent(agent)
    return sample


def _parse_sample(raw: bytes) -> Sample:
    return build_sample(_decode("sample", (), schema.SAMPLE_DECODER, raw))


def _reject_constant(name: str):
    raise SampleError(f"body: invalid JSON: {name} is not allowed")


def _json(raw: bytes) -> Any:
    """The body as Python's json reads it; a body it cannot read is refused in its words."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except SampleError:
        raise
    except (ValueError, RecursionError) as exc:
        raise SampleError(f"body: invalid JSON: {str(exc)[:120]}") from None


def _as_msgspec_reads(value: Any) -> Any:
    """The document re-encodable for msgspec with Python's json's meaning: integral floats
    (64.0, which an integer field accepts) as integers, and the infinity json reads 1e400 as an
    integer beyond every bound."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return 10**400 if value > 0 else -(10**400)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _as_msgspec_reads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_msgspec_reads(v) for v in value]
    return value


def _second_chance(refused: _Refused) -> bool:
    """Where msgspec is stricter than the contract: an integer written as a float, JSON in UTF-16
    or UTF-32, and a surrogate encoded as UTF-8 (Python's json reads them all)."""
    error = refused.error
    if isinstance(error, msgspec.ValidationError):
        return "got `float`" in str(error)
    return isinstance(error, (msgspec.DecodeError, UnicodeDecodeError))


_ERROR = re.compile(r"(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING_FIELD = re.compile(r"Object missing required field `([^`]+)`")


def _value(doc: Any, steps: list[str | int]) -> Any:
    for step in steps:
        try:
            doc = doc[step]
        except (KeyError, IndexError, TypeError):
            return schema.MISSING
    return doc


def _message(refused: _Refused, doc: Any) -> str:
    """msgspec's error as one line: its path, and the contract's words for the value that was sent."""
    if not isinstance(refused.error, msgspec.ValidationError):
        return f"body: invalid JSON: {str(refused.error)[:120]}"
    if refused.part == "body":
        return "body: must be a JSON object"
    error = _ERROR.fullmatch(str(refused.error))
    steps = [name or int(index) for name, index in _STEP.findall(error["path"] or "")]
    if missing := _MISSING_FIELD.fullmatch(error["reason"]):
        steps.append(missing[1])
    path = refused.part + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)
    try:
        rule = (schema.SAMPLE if refused.part == "sample" else schema.AGENT).at(steps)
    except (AttributeError, KeyError):  # a path the rules do not know: msgspec's own words
        return f"{path}: {error['reason']}"
    return f"{path}: {schema.reason(rule, _value(doc, [*refused.keys, *steps]))}"


def _read(raw: bytes, parse, first=None) -> Sample:
    """parse(raw) (or first(raw), which knows raw already); when msgspec refuses it, the problem
    worded from the value sent, as Python's json reads it (and a second try where msgspec is
    stricter than the contract)."""
    raw = _storable(raw)
    try:
        return (first or parse)(raw)
    except _Refused as exc:
        refused = exc
    doc = _json(raw)
    if _second_chance(refused):
        try:
            return parse(_storable(json.dumps(_as_msgspec_reads(doc)).encode()))
        except _Refused as exc:
            refused = exc
        except RecursionError as exc:
            raise SampleError(f"body: invalid JSON: {exc}") from None
    raise SampleError(_message(refused, doc))


def parse_body(raw: bytes) -> Sample:
    """Parse and validate an ingest body (either single-sample form of the contract)."""
    return _read(raw, _parse)


@dataclass
class Batch:
    """The batch form: the samples that passed (with their index in the body) and the refused."""

    samples: list[tuple[int, Sample]]
    refused: list[dict[str, Any]]
    agent: dict[str, Any]


_SAMPLES = msgspec.json.Decoder(list[msgspec.Raw])


def _batch_item(index: int, raw: bytes, now: datetime, tolerance_seconds: int) -> Sample:
    """One sample of a batch, checked exactly as a single one; errors name `samples[i]`."""
    try:
        sample = _read(raw, _parse_sample)
        if sample.collected_at is None:
            raise SampleError("sample.collected_at: is required in a batch")
        check_not_in_future(sample, now, tolerance_seconds)
    except SampleError as exc:
        message = str(exc)
        if message.startswith("sample"):
            message = message[len("sample") :]
        elif message == "body: must be a JSON object":
            message = ": must be an object"
        else:
            message = ": " + message.removeprefix("body: ")
        raise SampleError(f"samples[{index}]{message}") from None
    return sample


class TooLarge(SampleError):
    """A single sample's body over its limit (a batch's may be larger)."""


def parse_any(raw: bytes, now: datetime, tolerance_seconds: int, max_batch: int, single_limit: int) -> Sample | Batch:
    """A single sample (either form of the contract; its future check is the caller's) or, for a
    body with `samples`, a batch: each sample checked on its own, so that one bad sample costs
    only itself. A batch as a whole is refused (SampleError) only when it is not a list of 1 to
    max_batch items or its agent block is bad. max_batch 0: batches are off. A single sample's
    body over single_limit is TooLarge, found before it is parsed."""
    raw = _storable(raw)
    try:
        envelope = schema.ENVELOPE.decode(raw)
    except _UNREADABLE:
        envelope = None
    if envelope is None or not envelope.samples or envelope.sample:
        if len(raw) > single_limit:
            raise TooLarge(f"body is larger than {single_limit} bytes")
        # The envelope is not decoded twice; a body that is not JSON is worded by _read.
        return _read(raw, _parse, first=None if envelope is None else partial(_parse, envelope=envelope))
    if max_batch <= 0:
        raise SampleError("samples: this server takes one sample per request (batches are turned off)")
    try:
        items = _SAMPLES.decode(envelope.samples)
    except _UNREADABLE:
        raise SampleError("samples: must be a list of samples") from None
    if not items:
        raise SampleError("samples: must have at least one sample")
    if len(items) > max_batch:
        raise SampleError(f"samples: must have at most {max_batch} samples")
    agent_raw = envelope.agent
    if agent_raw and bytes(memoryview(agent_raw)[:1]) not in (b"{", b"n"):
        raise SampleError("agent: must be an object")
    agent = _read_agent(agent_raw)
    samples, refused = [], []
    for index, item in enumerate(items):
        try:
            samples.append((index, _batch_item(index, bytes(item), now, tolerance_seconds)))
        except SampleError as exc:
            refused.append({"index": index, "error": str(exc)})
    return Batch(samples, refused, agent)


def _read_agent(raw) -> dict[str, Any]:
    try:
        return _agent(raw)
    except _Refused as exc:
        doc = _json(bytes(raw))
        raise SampleError(_message(exc, {"agent": doc})) from None
