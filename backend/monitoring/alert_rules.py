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
from dataclasses import dataclass
from typing import Any

import yaml
from django.db import transaction

from . import catalogue
from .alert_models import AlertChannel, AlertRule
from .bottleneck import LABELS

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
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise RulesError(f"{where}: must be a mapping with slugs and/or labels")
    _only(value, {"slugs", "labels"}, where)
    clean: dict[str, Any] = {}
    if "slugs" in value:
        slugs = value["slugs"]
        if not isinstance(slugs, list) or not all(isinstance(s, str) and s for s in slugs):
            raise RulesError(f"{where}.slugs: must be a list of server slugs")
        clean["slugs"] = sorted(set(slugs))
    if "labels" in value:
        labels = value["labels"]
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise RulesError(f"{where}.labels: must map label names to strings")
        clean["labels"] = {str(k): v for k, v in sorted(labels.items())}
    return clean


def selects(selection: dict, slug: str, labels: dict | None) -> bool:
    """Whether a rule's (or a silence's) server selection takes this server."""
    if "slugs" in selection and slug not in selection["slugs"]:
        return False
    wanted = selection.get("labels") or {}
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


# --- the file ---------------------------------------------------------------------------


def _channel(item: Any, where: str) -> dict:
    if not isinstance(item, dict):
        raise RulesError(f"{where}: must be a mapping")
    _only(item, {"name", "kind", "url", "secret", "to"}, where)
    name = item.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", name):
        raise RulesError(f"{where}.name: must be 1 to 64 letters, digits, - or _")
    kind = item.get("kind")
    if kind not in dict(AlertChannel.KINDS):
        raise RulesError(f"{where}.kind: must be one of {', '.join(dict(AlertChannel.KINDS))}")
    url, secret, to = item.get("url", ""), item.get("secret", ""), item.get("to", [])
    if kind in ("webhook", "slack"):
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise RulesError(f"{where}.url: a {kind} channel needs an http(s) URL")
    elif not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise RulesError(f"{where}.to: an email channel needs a list of addresses")
    if not isinstance(secret, str):
        raise RulesError(f"{where}.secret: must be a string")
    return {"name": name, "kind": kind, "url": url or "", "secret": secret or "", "to": list(to or [])}


def _rule(item: Any, where: str, channels: set[str]) -> dict:
    if not isinstance(item, dict):
        raise RulesError(f"{where}: must be a mapping")
    _only(item, {"name", "when", "for", "servers", "notify", "repeat", "enabled"}, where)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise RulesError(f"{where}.name: must be a name of 1 to 200 characters")
    cond = condition(item.get("when"), f"{where}.when")
    default_for = XID_DEFAULT_WINDOW if cond.kind == "xid" else 0
    notify = item.get("notify", [])
    if not isinstance(notify, list) or not all(isinstance(n, str) for n in notify):
        raise RulesError(f"{where}.notify: must be a list of channel names")
    for channel in notify:
        if channel not in channels:
            raise RulesError(f"{where}.notify: no channel named {channel!r}")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesError(f"{where}.enabled: must be true or false")
    return {
        "name": name.strip(),
        "when": item["when"],
        "for_seconds": duration(item.get("for", default_for), f"{where}.for"),
        "repeat_seconds": duration(item["repeat"], f"{where}.repeat") if item.get("repeat") is not None else None,
        "servers": selector(item.get("servers"), f"{where}.servers"),
        "notify": sorted(set(notify)),
        "enabled": enabled,
    }


def parse(text: str) -> tuple[list[dict], list[dict]]:
    """The channels and rules of a rules file, checked; RulesError for the first problem."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise RulesError("the file must be a mapping with channels and rules")
    _only(document, {"channels", "rules"}, "file")
    raw_channels, raw_rules = document.get("channels") or [], document.get("rules") or []
    if not isinstance(raw_channels, list) or not isinstance(raw_rules, list):
        raise RulesError("channels and rules must be lists")
    stored = set(AlertChannel.objects.values_list("name", flat=True))
    channels = [_channel(item, f"channels[{i}]") for i, item in enumerate(raw_channels)]
    known = stored | {c["name"] for c in channels}
    rules = [_rule(item, f"rules[{i}]", known) for i, item in enumerate(raw_rules)]
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
