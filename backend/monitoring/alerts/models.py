"""Alerting's rows: channels, rules, silences, episodes and deliveries (models.py imports them).

A rule's condition and a channel's settings are checked by rules.py (the YAML format and
the admin's forms both go through it). An episode is one stretch of a rule's condition holding
for one server: pending until it has held for the rule's `for`, then firing, then resolved. Each
notice an episode sends is a delivery row, written in the same transaction as the change of state
and sent by the worker, so that a restart resends nothing and a broken channel blocks no other.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AlertChannel(models.Model):
    KINDS = [("webhook", "webhook"), ("slack", "Slack incoming webhook"), ("email", "email")]

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=KINDS)
    url = models.URLField(max_length=500, blank=True, default="", help_text="webhook and slack")
    secret = models.CharField(
        max_length=200, blank=True, default="", help_text="webhook: signs the body (X-TrainWatch-Signature)"
    )
    to = models.JSONField(default=list, blank=True, help_text="email: the addresses")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class AlertRule(models.Model):
    name = models.CharField(max_length=200, unique=True)
    # The condition as the rules file writes it, e.g. {"bottleneck": "gpu-idle-held"}.
    when = models.JSONField()
    for_seconds = models.PositiveIntegerField(default=0)
    repeat_seconds = models.PositiveIntegerField(null=True, blank=True)
    # {"slugs": [...], "labels": {...}}; empty: every server.
    servers = models.JSONField(default=dict, blank=True)
    notify = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertSilence(models.Model):
    """Mutes the rule, the server or the servers with these agent labels (all that are set) until
    a time: their episodes are recorded, their notices not sent."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE)
    server = models.ForeignKey("monitoring.MonitoredServer", null=True, blank=True, on_delete=models.CASCADE)
    labels = models.JSONField(default=dict, blank=True)
    until = models.DateTimeField()
    comment = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-until"]

    def __str__(self) -> str:
        return f"silence until {self.until.isoformat()}"


class AlertEpisode(models.Model):
    PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
    STATES = [(PENDING, PENDING), (FIRING, FIRING), (RESOLVED, RESOLVED)]

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="episodes")
    server = models.ForeignKey("monitoring.MonitoredServer", on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=STATES)
    # When the condition began to hold (a sample's time, or the newest sample's for offline).
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # What held: the metric's value or the label, and the classifier's reason at the time.
    value = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    silenced = models.BooleanField(default=False)
    notices = models.PositiveIntegerField(default=0)  # sent while firing: the first, then repeats
    last_notice_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One open episode per rule and server.
            models.UniqueConstraint(
                fields=["rule", "server"],
                condition=models.Q(state__in=["pending", "firing"]),
                name="alertepisode_one_open_per_rule_server",
            ),
        ]
        indexes = [models.Index(fields=["state", "started_at"], name="alertepisode_state_idx")]

    def __str__(self) -> str:
        return f"{self.rule} on {self.server_id}: {self.state}"


class AlertDelivery(models.Model):
    """One notice of an episode to one channel."""

    PENDING, SENT, FAILED, MUTED = "pending", "sent", "failed", "muted"
    STATES = [(PENDING, PENDING), (SENT, SENT), (FAILED, FAILED), (MUTED, MUTED)]

    episode = models.ForeignKey(AlertEpisode, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16)  # firing | resolved | repeat
    sequence = models.PositiveIntegerField(default=0)  # the episode's notice number
    state = models.CharField(max_length=16, choices=STATES, default=PENDING)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["episode", "channel", "event", "sequence"], name="alertdelivery_once_per_notice"
            ),
        ]
        indexes = [models.Index(fields=["state", "next_try_at"], name="alertdelivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} of {self.episode_id} to {self.channel}: {self.state}"
