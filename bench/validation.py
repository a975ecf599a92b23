"""Validating an ingest body: the hand-written checkers against msgspec and pydantic v2.

All three read the same catalogue and give the same results and messages on the bodies below:
- hand-written: the checkers ingest used before msgspec, read from git at BASELINE_COMMIT;
- msgspec: today's `body.parse_body` (structs from `schema.py`);
- pydantic: models built here by `create_model` from the same rules, `model_validate_json`,
  strict, with the same wording of errors (pydantic's errors carry the value sent).

Bodies: the contract's recommended form with 4 GPUs (2 processes each) and 2 disks, the same with
8 GPUs and 4 disks, the minimal form (the sample itself, two metrics), and the 4-GPU body with one
value out of range (the cost of a refusal). Pure CPU, no database: `make bench-validation`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import timeit
import types
from pathlib import Path
from typing import Annotated, Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT))

from pydantic import ConfigDict, Field, ValidationError, create_model  # noqa: E402

from bench.common import machine, table  # noqa: E402
from monitoring.ingest import body, schema, validation  # noqa: E402
from tests import samples  # noqa: E402

# The last commit whose validation.py checked each field by hand.
BASELINE_COMMIT = "d9e5698"
AT = samples.utc(2026, 2, 26, 2, 37, 49)


def bodies() -> dict[str, bytes]:
    def with_processes(gpus: int, disks: int) -> dict:
        body = samples.body(AT, gpus=gpus, disks=disks)
        for gpu in body["sample"]["gpus"]:
            gpu["throttle_reasons"] = ["sw_power_cap"]
            gpu["processes"] = [
                {"pid": 4100 + i, "name": "python", "user": "ml", "used_memory_bytes": 30 * 2**30, "type": "C"}
                for i in range(2)
            ]
        return body

    invalid = with_processes(4, 2)
    invalid["sample"]["gpus"][1]["memory_percent"] = 180.0
    minimal = {"collected_at": AT.isoformat(), "cpu_usage_percent": 12.5, "memory_percent": 41.0}
    return {
        "4 GPUs, 2 disks": json.dumps(with_processes(4, 2)).encode(),
        "8 GPUs, 4 disks": json.dumps(with_processes(8, 4)).encode(),
        "minimal": json.dumps(minimal).encode(),
        "invalid (4 GPUs)": json.dumps(invalid).encode(),
    }


# --- the hand-written baseline, as it was ---


def handwritten():
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:backend/monitoring/validation.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("monitoring.handwritten_validation")
    module.__package__ = "monitoring"
    sys.modules[module.__name__] = module
    exec(compile(source, f"{BASELINE_COMMIT}:validation.py", "exec"), module.__dict__)
    return module.parse_body, module.SampleError


# --- pydantic v2, from the same rules ---

STRICT = ConfigDict(strict=True, extra="ignore")


def _pydantic_type(rule: schema.Rule, name: str) -> Any:
    if rule.kind == "number":
        low = -schema.MAX_MAGNITUDE if rule.low is None else max(rule.low, -schema.MAX_MAGNITUDE)
        high = schema.MAX_MAGNITUDE if rule.high is None else min(rule.high, schema.MAX_MAGNITUDE)
        return Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]
    if rule.kind in ("integer", "index"):
        return Annotated[int, Field(ge=rule.low, le=rule.high)]
    if rule.kind == "text":
        return Annotated[str, Field(max_length=rule.limit)]
    if rule.kind == "bool":
        return bool
    if rule.kind == "choice":
        return Literal[rule.choices]
    if rule.kind == "timestamp":
        return str
    if rule.kind == "list":
        return Annotated[list[_pydantic_type(rule.item, name)], Field(max_length=rule.limit)]
    if rule.kind == "labels":
        return dict[str, Any]
    return _model(name, rule)


def _model(name: str, rule: schema.Rule):
    fields = {
        key: (_pydantic_type(sub, key.title()), ...)
        if sub.required
        else (_pydantic_type(sub, key.title()) | None, None)
        for key, sub in rule.fields.items()
    }
    return create_model(name, __config__=STRICT, **fields)


SAMPLE_MODEL = _model("Sample", schema.SAMPLE)
AGENT_MODEL = _model("Agent", schema.AGENT)
WRAPPED_MODEL = create_model("Wrapped", __config__=STRICT, sample=(SAMPLE_MODEL, ...), agent=(AGENT_MODEL | None, None))


def _pydantic_message(error: ValidationError, wrapped: bool) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    part = loc.pop(0) if wrapped else "sample"
    if not loc and part == "sample" and first["type"] == "missing":
        return "sample: must be an object"
    rule = (schema.SAMPLE if part == "sample" else schema.AGENT).at(loc)
    value = schema.MISSING if first["type"] == "missing" else first["input"]
    path = part + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in loc)
    return f"{path}: {schema.reason(rule, value)}"


def pydantic_parse_body(raw: bytes) -> validation.Sample:
    """Either form of the body; the same checks by hand as msgspec's path needs, after pydantic."""
    raw = body._storable(raw)
    try:
        model = WRAPPED_MODEL.model_validate_json(raw)
        sample, agent = model.sample, model.agent
    except ValidationError as exc:
        if exc.errors()[0]["loc"] != ("sample",) or exc.errors()[0]["type"] != "missing":
            raise validation.SampleError(_pydantic_message(exc, True)) from None
        try:
            sample, agent = SAMPLE_MODEL.model_validate_json(raw), None
        except ValidationError as exc:
            raise validation.SampleError(_pydantic_message(exc, False)) from None
    fields = sample.model_dump()
    moment = fields.pop("collected_at")
    moment = None if moment is None else validation.parse_timestamp("sample.collected_at", moment)
    host = {name: fields[name] for name in schema.HOST}
    gpus, disks = fields["gpus"] or [], fields["disks"] or []
    validation._check_gpus(gpus)
    validation._check_disks(disks)
    if all(v is None for v in host.values()) and not gpus and not disks:
        raise validation.SampleError("sample: has none of the known metric fields")
    clean = {k: v for k, v in (agent.model_dump() if agent else {}).items() if v is not None}
    if "labels" in clean:
        clean["labels"] = validation.check_labels(clean["labels"])
    return validation.Sample(collected_at=moment, host=host, gpus=gpus, disks=disks, agent=clean)


# --- timing ---


def outcome(parse, error: type[Exception], raw: bytes):
    try:
        sample = parse(raw)
    except error as exc:
        return str(exc)
    return (sample.collected_at, sample.host, sample.gpus, sample.disks, sample.agent)


def per_call(parse, error: type[Exception], raw: bytes, seconds: float) -> float:
    """Seconds per call: the best of 5 rounds of about seconds/5 each, with the garbage collector on
    (parsing makes objects; ingest pays for collecting them)."""
    timer = timeit.Timer(lambda: outcome(parse, error, raw), setup="gc.enable()")
    number, took = timer.autorange()
    number = max(1, round(number * seconds / 5 / took))
    return min(timer.repeat(repeat=5, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per implementation and body")
    args = parser.parse_args()

    implementations = {
        "hand-written (before)": handwritten(),
        "msgspec (now)": (body.parse_body, validation.SampleError),
        "pydantic": (pydantic_parse_body, validation.SampleError),
    }
    rows = []
    for body_name, raw in bodies().items():
        expected = outcome(*implementations["hand-written (before)"], raw)
        baseline = None
        for name, (parse, error) in implementations.items():
            got = outcome(parse, error, raw)
            assert got == expected, f"{name} on {body_name}: {got!r} != {expected!r}"
            seconds = per_call(parse, error, raw, args.seconds)
            baseline = baseline or seconds
            rows.append(
                [
                    body_name,
                    f"{len(raw):,} B",
                    name,
                    f"{seconds * 1e6:.1f}",
                    f"{1 / seconds:,.0f}",
                    f"{baseline / seconds:.1f}x",
                ]
            )
    print(machine())
    print(table(["body", "size", "validator", "µs per body", "bodies/s", "speed-up"], rows))


if __name__ == "__main__":
    main()
