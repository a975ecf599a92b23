"""Alert rules and channels as code: the YAML format, its checks, import and export.

```yaml
channels:
  - {name: ops, kind: webhook, url: https://hooks.example.com/x, secret: change-me}
  - {name: team, kind: slack, url: https://hooks.slack.com/services/...}
  - {name: oncall, kind: email, to: [oncall@example.com]}
rules:
  - name: idle GPUs holding memory
    when: {bottleneck: gpu-idle-held}
    for: 15m
    servers: {labels: {team: llm}}    # or {slugs: [a100-01]}; left out: every server
    notify: [ops]
    repeat: 4h                        # optional
```

Conditions (`when`), each checked here and nowhere else:
- `{bottleneck: <label>}`: the classifier's label holds;
- `{offline: true}`: no sample for `for` (beat checks it);
- `{metric: <name>, op: ">", value: 85}`: a host metric of the catalogue, or a GPU metric (any
  GPU of the sample);
- `{xid: true}` or `{xid: [79, 48]}`: an XID error (of those numbers) in the last `for` (5 minutes
  when left out); it fires at once and resolves when `for` passes without one.

Import creates or updates by name (`prune` deletes what the file lacks); export writes what is
stored in the same format, so that it imports back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
from msgspec import UNSET, Meta, UnsetType

from .. import catalogue
from ..catalogue import LABELS
from .models import AlertChannel, AlertRule

OPS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__, "==": float.__eq__}
# Metrics a threshold can watch: numbers, per host or per GPU (any GPU of the sample).
NUMERIC_KINDS = ("percent", "gauge", "rate", "integer", "counter")
METRIC_BLOCKS = ("host", "gpu")
XID_DEFAULT_WINDOW = 300
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


class RulesError(ValueError):
    """A rules file or a rule that cannot be used; str() names the place, e.g. `rules[2].when`."""


def duration(value: Any, where: str) -> int:
    """Seconds of `15m`, `4h`, `30s`, `1d` or a number of seconds."""
    if isinstance(value, bool):
        raise RulesError(f"{where}: must be a duration such as 30s, 15m, 4h or 1d")
    if isinstance(value, int) and value >= 0:
        return value
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise RulesError(f"{where}: must be a duration such as 30s, 15m, 4h or 1d, not {value!r}")
    return int(match[1]) * _UNITS[match[2] or "s"]


def duration_text(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Condition:
    kind: str  # bottleneck | offline | metric | xid
    label: str = ""
    metric: catalogue.Metric | None = None
    op: str = ""
    value: float = 0.0
    xids: tuple[int, ...] = ()  # empty: any XID

    def holds(self, value: float | None) -> bool:
        return value is not None and OPS[self.op](float(value), self.value)


def metric_named(name: str) -> catalogue.Metric | None:
    for block in METRIC_BLOCKS:
        found = catalogue.BY_NAME.get((block, name))
        if found is not None and found.kind in NUMERIC_KINDS:
            return found
    return None


def condition(when: Any, where: str = "when") -> Condition:
    """The condition a `when` mapping states, or RulesError naming what is wrong."""
    if not isinstance(when, dict) or not when:
        raise RulesError(f"{where}: must be a mapping such as {{bottleneck: gpu-idle-held}}")
    if "bottleneck" in when:
        _only(when, {"bottleneck"}, where)
        if when["bottleneck"] not in LABELS:
            raise RulesError(f"{where}.bottleneck: must be one of {', '.join(LABELS)}")
        return Condition("bottleneck", label=when["bottleneck"])
    if "offline" in when:
        _only(when, {"offline"}, where)
        if when["offline"] is not True:
            raise RulesError(f"{where}.offline: must be true")
        return Condition("offline")
    if "metric" in when:
        _only(when, {"metric", "op", "value"}, where)
        metric = metric_named(when["metric"]) if isinstance(when["metric"], str) else None
        if metric is None:
            raise RulesError(f"{where}.metric: {when['metric']!r} is not a numeric host or GPU metric of the catalogue")
        if when.get("op") not in OPS:
            raise RulesError(f"{where}.op: must be one of {' '.join(OPS)}")
        value = when.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RulesError(f"{where}.value: must be a number")
        return Condition("metric", metric=metric, op=when["op"], value=float(value))
    if "xid" in when:
        _only(when, {"xid"}, where)
        xids = when["xid"]
        if xids is True:
            return Condition("xid")
        if isinstance(xids, list) and xids and all(isinstance(x, int) and not isinstance(x, bool) for x in xids):
            return Condition("xid", xids=tuple(sorted(set(xids))))
        raise RulesError(f"{where}.xid: must be true or a list of XID numbers")
    raise RulesError(f"{where}: must name one of bottleneck, offline, metric, xid")


def _only(mapping: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(mapping) - allowed)
    if extra:
        raise RulesError(f"{where}: unknown key {extra[0]!r}")


def selector(value: Any, where: str) -> dict:
    """`servers`: {slugs: [...]} and/or {labels: {key: value}}; empty means every server."""
    return {} if value is None else _convert(value, Servers, where).clean()


def selects(selection: dict, slug: str, labels: dict | None) -> bool:
    """Whether a rule's (or a silence's) server selection takes this server."""
    if "slugs" in selection and slug not in selection["slugs"]:
        return False
    wanted = selection.get("labels") or {}
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


# --- the file's shape -------------------------------------------------------------------
# msgspec checks the structure (known keys, types, kinds, names) in one pass; what one field
# cannot say (a condition, a duration, a channel's kind-specific settings, the cross-checks) is
# checked by hand afterwards. Each struct words its own problems, so that a refusal reads as one
# line naming the place, e.g. `rules[0].notify: must be a list of channel names`.

KINDS = tuple(dict(AlertChannel.KINDS))
_EMAIL = EmailValidator()
# Django's URL check, but a host may also be one label: a service name such as
# http://alertmanager:9093/hook, as in docker-compose or Kubernetes.
_HOST = URLValidator.hostname_re + URLValidator.domain_re + f"(?:{URLValidator.tld_re})?"
_URL = URLValidator(
    schemes=["http", "https"],
    regex=re.compile(
        r"^https?://(?:[^\s:@/]+(?::[^\s:@/]*)?@)?"
        rf"(?:{URLValidator.ipv4_re}|{URLValidator.ipv6_re}|{_HOST})(?::[0-9]{{1,5}})?(?:[/?#][^\s]*)?\Z",
        re.IGNORECASE,
    ),
)


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    # What a value that is not this struct's mapping gets told, and what each field's does.
    shape: ClassVar[str] = "must be a mapping"
    reasons: ClassVar[dict[str, str]] = {}


class Servers(_Strict):
    shape = "must be a mapping with slugs and/or labels"
    reasons = {"slugs": "must be a list of server slugs", "labels": "must map label names to strings"}

    # Left out and empty differ: `slugs: []` selects no server.
    slugs: list[Annotated[str, Meta(min_length=1)]] | UnsetType = UNSET
    labels: dict[str, str] | UnsetType = UNSET

    def clean(self) -> dict:
        clean: dict[str, Any] = {}
        if self.slugs is not UNSET:
            clean["slugs"] = sorted(set(self.slugs))
        if self.labels is not UNSET:
            clean["labels"] = dict(sorted(self.labels.items()))
        return clean


class ChannelEntry(_Strict):
    reasons = {
        "name": "must be 1 to 64 letters, digits, - or _",
        "kind": f"must be one of {', '.join(KINDS)}",
        "url": "must be an http(s) URL of at most 500 characters",
        "secret": "must be a string of at most 200 characters",
        "to": "must be a list of email addresses",
    }

    # \Z, not $: msgspec searches the pattern, and $ also matches before a final newline.
    name: Annotated[str, Meta(pattern=r"\A[-a-zA-Z0-9_]{1,64}\Z")]
    kind: Literal[KINDS]
    # The columns' lengths: longer would fail only when stored.
    url: Annotated[str, Meta(max_length=500)] = ""
    secret: Annotated[str, Meta(max_length=200)] = ""
    to: list[str] = []


class RuleEntry(_Strict):
    reasons = {
        "name": "must be a name of 1 to 200 characters",
        "notify": "must be a list of channel names",
        "enabled": "must be true or false",
    }

    name: Annotated[str, Meta(max_length=200, pattern=r"\S")]
    # condition() and duration() check these and word their problems.
    when: Any = None
    for_: Any = msgspec.field(name="for", default=UNSET)  # left out: the condition's default
    repeat: Any = None
    servers: Servers | None = None
    notify: list[str] = []
    enabled: bool = True


class RulesFile(_Strict):
    shape = "must be a mapping with channels and rules"
    reasons = {"channels": "must be a list of channels", "rules": "must be a list of rules"}

    channels: list[ChannelEntry] | None = None
    rules: list[RuleEntry] | None = None


# --- msgspec's refusals, in the file's words ----------------------------------------------

T = TypeVar("T")
_ERROR = re.compile(r"(?P<reason>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")  # a dict's key, `[...]`, is no step: the dict's field words it
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`", re.S)
_MISSING = re.compile(r"Object missing required field `(.*)`", re.S)


def _convert(value: Any, kind: type[T], where: str) -> T:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise RulesError(_message(str(exc), kind, where)) from None


def _message(error: str, root: type[_Strict], where: str) -> str:
    """msgspec's error as one line: its path cut after the deepest struct field (a bad item of
    `notify` is notify's problem) and that field's words."""
    match = _ERROR.fullmatch(error)
    steps: list[str | int] = [name or int(index) for name, index in _STEP.findall(match["path"] or "")]
    if missing := _MISSING.fullmatch(match["reason"]):
        steps.append(missing[1])
    node: mi.Type = mi.type_info(root)
    owner, place = root, []
    for step in steps:
        following = _step(node, step)
        if following is None:
            break
        owner = _struct(node).cls if isinstance(step, str) else owner
        node = following
        place.append(step)
    where = _place(where, place)
    struct = _struct(node)
    if struct is None:
        return f"{where}: {owner.reasons.get(place[-1], match['reason'])}"
    if unknown := _UNKNOWN.fullmatch(match["reason"]):
        return f"{where}: unknown key {unknown[1]!r}"
    return f"{where}: {'has a key that is not a string' if match['key'] else struct.cls.shape}"


def _place(where: str, steps: list[str | int]) -> str:
    text = where + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)
    # The file's own places start at a field (`rules[0]`); only the file itself is called `file`.
    return text.removeprefix(".") or "file"


def _options(node: mi.Type) -> tuple[mi.Type, ...]:
    return node.types if isinstance(node, mi.UnionType) else (node,)


def _struct(node: mi.Type) -> mi.StructType | None:
    return next((option for option in _options(node) if isinstance(option, mi.StructType)), None)


def _step(node: mi.Type, step: str | int) -> mi.Type | None:
    """Where a step of msgspec's path leads: a struct's field, or an item of a list of structs."""
    for option in _options(node):
        if isinstance(option, mi.StructType) and isinstance(step, str):
            return next((f.type for f in option.fields if f.encode_name == step), None)
        if isinstance(option, mi.ListType) and isinstance(step, int) and _struct(option.item_type):
            return option.item_type
    return None


# --- the file ---------------------------------------------------------------------------


def _channel(item: ChannelEntry, where: str) -> dict:
    if item.kind == "email":
        _addresses(item.to, f"{where}.to")
    elif not item.url:
        raise RulesError(f"{where}.url: a {item.kind} channel needs an http(s) URL")
    else:
        _check(_URL, item.url, f"{where}.url: {item.url!r} is not a valid http(s) URL")
    return {"name": item.name, "kind": item.kind, "url": item.url, "secret": item.secret, "to": list(item.to)}


def _addresses(addresses: list[str], where: str) -> None:
    if not addresses:
        raise RulesError(f"{where}: an email channel needs a list of addresses")
    for address in addresses:
        _check(_EMAIL, address, f"{where}: {address!r} is not a valid email address")


def _check(validator: Callable[[str], None], value: str, message: str) -> None:
    try:
        validator(value)
    except ValidationError:
        raise RulesError(message) from None


def _rule(item: RuleEntry, where: str, channels: set[str]) -> dict:
    cond = condition(item.when, f"{where}.when")
    for channel in item.notify:
        if channel not in channels:
            raise RulesError(f"{where}.notify: no channel named {channel!r}")
    for_ = (XID_DEFAULT_WINDOW if cond.kind == "xid" else 0) if item.for_ is UNSET else item.for_
    return {
        "name": item.name.strip(),
        "when": item.when,
        "for_seconds": duration(for_, f"{where}.for"),
        "repeat_seconds": None if item.repeat is None else duration(item.repeat, f"{where}.repeat"),
        "servers": {} if item.servers is None else item.servers.clean(),
        "notify": sorted(set(item.notify)),
        "enabled": item.enabled,
    }


def parse(text: str) -> tuple[list[dict], list[dict]]:
    """The channels and rules of a rules file, checked; RulesError for the first problem."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    file = _convert(document, RulesFile, "")
    stored = set(AlertChannel.objects.values_list("name", flat=True))
    channels = [_channel(item, f"channels[{i}]") for i, item in enumerate(file.channels or [])]
    known = stored | {c["name"] for c in channels}
    rules = [_rule(item, f"rules[{i}]", known) for i, item in enumerate(file.rules or [])]
    for kind, items in (("channel", channels), ("rule", rules)):
        names = [item["name"] for item in items]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise RulesError(f"{kind} {duplicate!r} is named twice")
    return channels, rules


@dataclass
class ImportResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    deleted: list[str]


def import_text(text: str, prune: bool = False) -> ImportResult:
    """Create or update every channel and rule of the file by name, in one transaction; with
    prune, delete those the file lacks."""
    channels, rules = parse(text)
    result = ImportResult([], [], [], [])
    with transaction.atomic():
        for item in channels:
            _save(AlertChannel, item, result, f"channel {item['name']}")
        by_name = {c.name: c for c in AlertChannel.objects.all()}
        for item in rules:
            fields = {k: v for k, v in item.items() if k != "notify"}
            rule = _save(AlertRule, fields, result, f"rule {item['name']}")
            if sorted(c.name for c in rule.notify.all()) != item["notify"]:
                rule.notify.set([by_name[n] for n in item["notify"]])
                label = f"rule {item['name']}"
                if label in result.unchanged:
                    result.unchanged.remove(label)
                    result.updated.append(label)
        if prune:
            for model, items, kind in ((AlertRule, rules, "rule"), (AlertChannel, channels, "channel")):
                gone = model.objects.exclude(name__in=[i["name"] for i in items])
                result.deleted += [f"{kind} {name}" for name in gone.values_list("name", flat=True)]
                gone.delete()
    return result


def _save(model, fields: dict, result: ImportResult, label: str):
    obj = model.objects.filter(name=fields["name"]).first()
    if obj is None:
        obj = model.objects.create(**fields)
        result.created.append(label)
        return obj
    changed = [k for k, v in fields.items() if getattr(obj, k) != v]
    if changed:
        for key in changed:
            setattr(obj, key, fields[key])
        obj.save()
        result.updated.append(label)
    else:
        result.unchanged.append(label)
    return obj


def export_text() -> str:
    """Every channel and rule, in the file format (it imports back unchanged)."""
    channels = []
    for c in AlertChannel.objects.order_by("name"):
        item: dict[str, Any] = {"name": c.name, "kind": c.kind}
        if c.kind == "email":
            item["to"] = list(c.to)
        else:
            item["url"] = c.url
        if c.secret:
            item["secret"] = c.secret
        channels.append(item)
    rules = []
    for r in AlertRule.objects.order_by("name").prefetch_related("notify"):
        item = {"name": r.name, "when": r.when, "for": duration_text(r.for_seconds)}
        if r.servers:
            item["servers"] = r.servers
        item["notify"] = sorted(c.name for c in r.notify.all())
        if r.repeat_seconds is not None:
            item["repeat"] = duration_text(r.repeat_seconds)
        if not r.enabled:
            item["enabled"] = False
        rules.append(item)
    return yaml.safe_dump({"channels": channels, "rules": rules}, sort_keys=False, allow_unicode=True, width=100)
