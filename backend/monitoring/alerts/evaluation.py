"""Evaluating alert rules: episodes that go pending, firing and resolved, and the notices they owe.

The worker evaluates label, metric and XID rules over the samples it has just classified, in
time order, so that `for` counts sample time as Prometheus counts evaluation time: a condition
that stops holding before `for` has passed (flapping) sends nothing. Beat evaluates `offline`
against each server's newest sample. Every change of state and the notices it owes (delivery
rows, see delivery.py) are written in one transaction; nothing here runs on ingest.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import MonitoredServer
from .delivery import dispatch, payload
from .models import AlertChannel, AlertDelivery, AlertEpisode, AlertRule, AlertSilence
from .rules import Condition, condition, selects

log = logging.getLogger(__name__)

Labelled = dict[int, list[tuple[datetime, str, str]]]  # server: [(collected_at, label, reason)]


class Rule:
    """A stored rule with its condition read once."""

    def __init__(self, stored: AlertRule):
        self.stored = stored
        self.condition: Condition = condition(stored.when)
        self.channels: list[AlertChannel] = list(stored.notify.all())

    @property
    def for_seconds(self) -> int:
        # An XID rule's `for` is its window: it fires as soon as an error is in it.
        return 0 if self.condition.kind == "xid" else self.stored.for_seconds


def active_rules(offline: bool) -> list[Rule]:
    rules = []
    for stored in AlertRule.objects.filter(enabled=True).prefetch_related("notify"):
        rule = Rule(stored)
        if (rule.condition.kind == "offline") == offline:
            rules.append(rule)
    return rules


# --- what a sample shows -------------------------------------------------------------------


def _metric_values(server_id: int, start: datetime, end: datetime, rules: list[Rule]) -> dict:
    """Per sample time, each watched metric's value: the host's, or for a GPU metric the GPU
    that most nearly meets the rule (the highest for > and >=, the lowest for < and <=)."""
    host = sorted({r.condition.metric.name for r in rules if r.condition.metric and r.condition.metric.block == "host"})
    gpu = sorted({r.condition.metric.name for r in rules if r.condition.metric and r.condition.metric.block == "gpu"})
    values: dict[datetime, dict[str, tuple]] = defaultdict(dict)
    with connection.cursor() as cursor:
        if host:
            cursor.execute(
                f"SELECT collected_at, {', '.join(host)} FROM monitoring_snapshot "
                "WHERE server_id = %s AND collected_at BETWEEN %s AND %s",
                [server_id, start, end],
            )
            for at, *row in cursor.fetchall():
                for name, value in zip(host, row):
                    values[at][name] = (value, value)
        if gpu:
            cols = ", ".join(f"min({m}), max({m})" for m in gpu)
            cursor.execute(
                f"SELECT collected_at, {cols} FROM monitoring_gpusample "
                "WHERE server_id = %s AND collected_at BETWEEN %s AND %s GROUP BY collected_at",
                [server_id, start, end],
            )
            for at, *row in cursor.fetchall():
                for i, name in enumerate(gpu):
                    values[at][name] = (row[2 * i], row[2 * i + 1])
    return values


def _xids(server_id: int, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT occurred_at, xid FROM monitoring_xiderror "
            "WHERE server_id = %s AND occurred_at > %s AND occurred_at <= %s ORDER BY occurred_at",
            [server_id, start, end],
        )
        return cursor.fetchall()


def _check(rule: Rule, at: datetime, label: str, values: dict, xids) -> tuple[bool, float | None]:
    """Whether the rule's condition holds at this sample, and the value that decided it."""
    cond = rule.condition
    if cond.kind == "bottleneck":
        return label == cond.label, None
    if cond.kind == "metric":
        low, high = values.get(at, {}).get(cond.metric.name, (None, None))
        value = high if cond.op in (">", ">=", "==") else low
        return cond.holds(value), value
    # xid: one in the window before this sample
    window = timedelta(seconds=rule.stored.for_seconds)
    recent = [x for t, x in xids if at - window < t <= at and (not cond.xids or x in cond.xids)]
    return bool(recent), float(recent[-1]) if recent else None


# --- episodes ------------------------------------------------------------------------------


class Tracker:
    """One rule on one server: its open episode, moved along sample by sample."""

    def __init__(self, rule: Rule, server: MonitoredServer, silences: list[AlertSilence], episode: AlertEpisode | None):
        self.rule, self.server, self.silences = rule, server, silences
        self.episode = episode
        # (episode, event, its notice number, the payload as things stood)
        self.notices: list[tuple[AlertEpisode, str, int, dict]] = []

    def step(self, at: datetime, held: bool, value: float | None, label: str, reason: str) -> None:
        episode = self.episode
        if held:
            if episode is None:
                episode = self.episode = AlertEpisode(
                    rule=self.rule.stored, server=self.server, state=AlertEpisode.PENDING, started_at=at
                )
            episode.value, episode.label, episode.reason = value, label or "", reason or ""
            if episode.state == AlertEpisode.PENDING and at - episode.started_at >= timedelta(
                seconds=self.rule.for_seconds
            ):
                episode.state, episode.fired_at = AlertEpisode.FIRING, at
                episode.silenced = self._silenced(at)
                self._notice("firing", at)
            elif episode.state == AlertEpisode.FIRING and self._repeat_due(at):
                self._notice("repeat", at)
            episode.save()
        elif episode is not None:
            if episode.state == AlertEpisode.PENDING:
                # It stopped holding before `for` passed: nothing is sent, nothing is kept.
                if episode.pk:
                    episode.delete()
            else:
                episode.state, episode.ended_at = AlertEpisode.RESOLVED, at
                episode.save()
                self._notice("resolved", at)
            self.episode = None

    def _repeat_due(self, at: datetime) -> bool:
        repeat = self.rule.stored.repeat_seconds
        last = self.episode.last_notice_at
        return bool(repeat) and last is not None and at - last >= timedelta(seconds=repeat)

    def _silenced(self, at: datetime) -> bool:
        return any(silence_covers(s, self.rule.stored, self.server, at) for s in self.silences)

    def _notice(self, event: str, at: datetime) -> None:
        episode = self.episode
        if event != "resolved":
            episode.notices += 1
            episode.last_notice_at = at
        sequence = episode.notices if event != "resolved" else 0
        self.notices.append((episode, event, sequence, payload(episode, event)))


def open_episodes(rules: list[Rule], server_ids: list[int] | None = None) -> dict[tuple[int, int], AlertEpisode]:
    """The pending and firing episodes of these rules (and servers), by (rule id, server id)."""
    found = AlertEpisode.objects.filter(
        rule__in=[r.stored for r in rules], state__in=[AlertEpisode.PENDING, AlertEpisode.FIRING]
    )
    if server_ids is not None:
        found = found.filter(server_id__in=server_ids)
    return {(e.rule_id, e.server_id): e for e in found}


def silence_covers(silence: AlertSilence, rule: AlertRule, server: MonitoredServer, at: datetime) -> bool:
    if silence.until <= at:
        return False
    if silence.rule_id is not None and silence.rule_id != rule.pk:
        return False
    if silence.server_id is not None and silence.server_id != server.pk:
        return False
    return selects({"labels": silence.labels} if silence.labels else {}, server.slug, server.agent_labels)


def _current_silences() -> list[AlertSilence]:
    return list(AlertSilence.objects.filter(until__gt=timezone.now() - timedelta(days=1)))


def _write_notices(trackers: list[Tracker]) -> list[int]:
    """Delivery rows for every notice the trackers owe; returns the ids of those to send."""
    ids = []
    for tracker in trackers:
        for episode, event, sequence, data in tracker.notices:
            for channel in tracker.rule.channels:
                muted = episode.silenced or tracker._silenced(timezone.now())
                delivery = AlertDelivery.objects.create(
                    episode=episode,
                    channel=channel,
                    event=event,
                    sequence=sequence,
                    state=AlertDelivery.MUTED if muted else AlertDelivery.PENDING,
                    payload=data,
                )
                if not muted:
                    ids.append(delivery.pk)
    return ids


def _send_after_commit(ids: list[int]) -> None:
    if ids:
        transaction.on_commit(lambda: dispatch(ids))


def evaluate_labelled(labelled: Labelled) -> int:
    """The label, metric and XID rules over samples the classifier has just labelled; returns
    how many notices were written."""
    rules = active_rules(offline=False)
    if not rules or not labelled:
        return 0
    servers = {s.pk: s for s in MonitoredServer.objects.filter(pk__in=list(labelled))}
    silences = _current_silences()
    episodes = open_episodes(rules, list(labelled))
    written = 0
    for server_id, rows in labelled.items():
        server = servers.get(server_id)
        if server is None or not rows:
            continue
        mine = [r for r in rules if selects(r.stored.servers, server.slug, server.agent_labels)]
        if not mine:
            continue
        rows = sorted(rows)
        start, end = rows[0][0], rows[-1][0]
        values = _metric_values(server_id, start, end, mine) if any(r.condition.kind == "metric" for r in mine) else {}
        window = max((r.stored.for_seconds for r in mine if r.condition.kind == "xid"), default=0)
        xids = _xids(server_id, start - timedelta(seconds=window), end) if window else []
        with transaction.atomic():
            trackers = [Tracker(rule, server, silences, episodes.get((rule.stored.pk, server_id))) for rule in mine]
            for at, label, reason in rows:
                for tracker in trackers:
                    held, value = _check(tracker.rule, at, label, values, xids)
                    tracker.step(at, held, value, label, reason)
            ids = _write_notices(trackers)
            written += sum(len(t.notices) for t in trackers)
            _send_after_commit(ids)
    return written


def resolve_orphans(now: datetime | None = None) -> int:
    """Open episodes that nothing will evaluate again: of a rule since disabled, of a server since
    disabled, or of a rule that no longer selects the server (its selector or the agent's labels
    changed). As Alertmanager does when an alert stops being reported: a firing one resolves, with
    its notice; a pending one goes. Returns how many notices were written."""
    now = now or timezone.now()
    stale = AlertEpisode.objects.filter(state__in=[AlertEpisode.PENDING, AlertEpisode.FIRING]).select_related(
        "rule", "server"
    )
    orphans = [
        episode
        for episode in stale
        if not episode.rule.enabled
        or not episode.server.is_active
        or not selects(episode.rule.servers, episode.server.slug, episode.server.agent_labels)
    ]
    if not orphans:
        return 0
    rules: dict[int, Rule] = {}
    silences = _current_silences()
    with transaction.atomic():
        trackers = []
        for episode in orphans:
            rule = rules.setdefault(episode.rule_id, Rule(episode.rule))
            tracker = Tracker(rule, episode.server, silences, episode)
            tracker.step(now, False, None, "", "")
            trackers.append(tracker)
        ids = _write_notices(trackers)
        _send_after_commit(ids)
    return sum(len(t.notices) for t in trackers)


def prune(now: datetime | None = None) -> int:
    """Delete episodes resolved more than MONITORING_ALERT_HISTORY_DAYS ago, with their notices;
    returns how many episodes went."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MONITORING_ALERT_HISTORY_DAYS)
    _, by_model = AlertEpisode.objects.filter(state=AlertEpisode.RESOLVED, ended_at__lt=cutoff).delete()
    return by_model.get(AlertEpisode._meta.label, 0)


def evaluate_offline(now: datetime | None = None) -> int:
    """Beat's check: a server with no sample for a rule's `for` fires; one that sends again
    resolves. Servers that never sent a sample are not offline (they are not set up yet).
    First, episodes nothing evaluates any more are resolved (resolve_orphans)."""
    now = now or timezone.now()
    orphaned = resolve_orphans(now)
    rules = active_rules(offline=True)
    if not rules:
        return orphaned
    silences = _current_silences()
    episodes = open_episodes(rules)
    written = 0
    servers = list(MonitoredServer.objects.filter(is_active=True, latest_snapshot_at__isnull=False))
    with transaction.atomic():
        trackers = []
        for rule in rules:
            for server in servers:
                if not selects(rule.stored.servers, server.slug, server.agent_labels):
                    continue
                tracker = Tracker(rule, server, silences, episodes.get((rule.stored.pk, server.pk)))
                silent_for = (now - server.latest_snapshot_at).total_seconds()
                held = silent_for >= rule.stored.for_seconds
                if held and tracker.episode is None:
                    # Pending from the last sample; `for` has passed already, so it fires now.
                    tracker.step(server.latest_snapshot_at, True, silent_for, "", "")
                    tracker.step(now, True, silent_for, "", f"no sample for {int(silent_for)} s")
                elif held or tracker.episode is not None:
                    tracker.step(now, held, silent_for, "", f"no sample for {int(silent_for)} s" if held else "")
                trackers.append(tracker)
        ids = _write_notices(trackers)
        written = sum(len(t.notices) for t in trackers)
        _send_after_commit(ids)
    return orphaned + written
