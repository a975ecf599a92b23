"""Monitored servers and the samples their agents send.

Snapshots, GPU samples and disk samples are TimescaleDB hypertables partitioned on
`collected_at` (django-timescaledb drops Django's primary key for them). A unique
index on (server, collected_at[, device]) makes a resent sample a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import connection, models
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone
from timescale.db.models.fields import TimescaleDateTimeField

from . import catalogue
from .catalogue import title_for

TOKEN_PREFIX = "tw_"


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 is as strong as a slow hash here.
    return hashlib.sha256(token.encode()).hexdigest()


class MonitoredServer(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    hostname = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(blank=True, default="")
    is_active = models.BooleanField(default=True)
    token_hash = models.CharField(max_length=64, editable=False, default="")
    token_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # What the agent last told us about itself.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_agent_version = models.CharField(max_length=64, blank=True, default="")
    # How that agent was installed (deb, zipapp, container, pip); blank for agents that do not say.
    agent_packaging = models.CharField(max_length=32, blank=True, default="")
    agent_platform = models.CharField(max_length=255, blank=True, default="")
    agent_python = models.CharField(max_length=64, blank=True, default="")
    agent_labels = models.JSONField(default=dict, blank=True)

    # Kept by ingest and corrected by retention, so that listing servers never
    # counts rows in a hypertable.
    snapshot_count = models.BigIntegerField(default=0, editable=False)
    latest_snapshot_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The newest sample's figures and the current bottleneck, for the fleet overview.
    latest_gpu_top_util_percent = models.FloatField(null=True, blank=True, editable=False)
    sample_interval_seconds = models.FloatField(null=True, blank=True, editable=False)
    bottleneck_label = models.CharField(max_length=32, null=True, blank=True, editable=False)
    bottleneck_since = models.DateTimeField(null=True, blank=True, editable=False)
    bottleneck_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Every snapshot collected before this time is labelled (null: every snapshot is). Ingest
    # moves it back to the oldest sample it writes; the classifier moves it on (see classify/runner.py).
    unlabelled_from = models.DateTimeField(null=True, blank=True, editable=False)
    # The newest sample's counters (as ingest/store.py writes them): its successor's rates, for a
    # web process that did not write it.
    latest_counters = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    def set_new_token(self) -> str:
        """Store the hash of a fresh token and return the plaintext (shown once)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.token_created_at = timezone.now()
        return token

    def check_token(self, token: str) -> bool:
        if not self.token_hash or not token:
            return False
        return hmac.compare_digest(self.token_hash, hash_token(token))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "hostname": self.hostname,
            "description": self.description,
            "is_active": self.is_active,
            "last_seen_at": _iso(self.last_seen_at),
            "last_agent_version": self.last_agent_version,
            "agent_packaging": self.agent_packaging,
            "snapshot_count": self.snapshot_count,
            "latest_snapshot_at": _iso(self.latest_snapshot_at),
            "interval_seconds": self.sample_interval_seconds,
            "gpu_top_util_percent": self.latest_gpu_top_util_percent,
            "bottleneck": (
                {
                    "label": self.bottleneck_label,
                    "title": title_for(self.bottleneck_label),
                    "since": _iso(self.bottleneck_since),
                }
                if self.bottleneck_label
                else None
            ),
            "labels": self.agent_labels,
        }


def _iso(value):
    return value.isoformat() if value is not None else None


_FIELDS = {
    "percent": models.FloatField,
    "gauge": models.FloatField,
    "rate": models.FloatField,
    "bool": models.BooleanField,
    "names": models.JSONField,
    "processes": models.JSONField,
}
_WHOLE = {"bigint": models.BigIntegerField, "integer": models.IntegerField, "smallint": models.SmallIntegerField}


def metric_field(metric: catalogue.Metric) -> models.Field:
    """A metric's column as the catalogue defines it: null where the node could not read it."""
    if metric.derived[:1] == ("count",):
        return models.SmallIntegerField(default=0)  # a count of devices is never unknown
    if metric.kind == "text":
        return models.CharField(max_length=metric.length, null=True)
    if metric.kind in ("integer", "counter"):
        return _WHOLE.get(metric.column, models.FloatField)(null=True)
    return _FIELDS[metric.kind](null=True)


def metric_fields(block: str) -> dict[str, models.Field]:
    return {m.name: metric_field(m) for m in catalogue.columns(block)}


def _server_fk():
    # No database constraint: checking one costs every sample's seven rows a lookup of
    # the server on the hot ingest path, and ingest only ever writes a server it just
    # authenticated. Deleting a server deletes its samples (delete_samples_of_server).
    return models.ForeignKey(
        MonitoredServer, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )


class Snapshot(models.Model):
    """One sample of a host: every host field and derived rate. Written once, never updated:
    its bottleneck is a row of SnapshotLabel. (The table still has the bottleneck columns that
    labels were kept in until they moved: the first tiers' definitions read them, and they are
    null for every snapshot since.)"""

    server = _server_fk()
    collected_at = TimescaleDateTimeField(interval="1 day")
    received_at = models.DateTimeField(default=timezone.now)

    # Every host metric of the catalogue, sent or derived.
    vars().update(metric_fields("host"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "collected_at"], name="snapshot_server_time_uniq"),
        ]


class SnapshotLabel(models.Model):
    """The classifier's verdict on one snapshot, keyed like it and appended once. It carries
    what the label tiers need of the snapshot (its GPU count, for GPU-hours per label), since a
    continuous aggregate cannot join two hypertables."""

    server = _server_fk()
    collected_at = TimescaleDateTimeField(interval="1 day")
    label = models.CharField(max_length=32)
    confidence = models.FloatField()
    reason = models.TextField()
    rules_version = models.SmallIntegerField()
    # classified_at - the snapshot's received_at is the classification lag.
    classified_at = models.DateTimeField()
    gpu_count = models.SmallIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "collected_at"], name="snapshotlabel_server_time_uniq"),
        ]


class GpuSample(models.Model):
    """One GPU of one sample. Fields beyond the contract's are the agent's extras."""

    server = _server_fk()
    collected_at = TimescaleDateTimeField(interval="1 day")
    gpu_index = models.SmallIntegerField()
    vars().update(metric_fields("gpu"))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "collected_at", "gpu_index"], name="gpusample_server_time_gpu_uniq"
            ),
        ]


class XidError(models.Model):
    """An XID error NVML reported for one GPU: kept as an event, not a sample's column.

    A hypertable like the samples', so that retention drops its chunks with theirs; XIDs are
    rare, so its chunks are a week long."""

    server = _server_fk()
    gpu_index = models.SmallIntegerField()
    xid = models.IntegerField()
    occurred_at = TimescaleDateTimeField(interval="7 days")
    # The sample that carried it.
    collected_at = models.DateTimeField()

    class Meta:
        constraints = [
            # A resent sample stores its events once.
            models.UniqueConstraint(
                fields=["server", "occurred_at", "gpu_index", "xid"], name="xiderror_server_time_gpu_xid_uniq"
            ),
        ]


class DiskSample(models.Model):
    """One whole disk of one sample: the agent's counters and the rates derived from them."""

    server = _server_fk()
    collected_at = TimescaleDateTimeField(interval="1 day")
    device = models.CharField(max_length=64)
    vars().update(metric_fields("disk"))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "collected_at", "device"], name="disksample_server_time_device_uniq"
            ),
        ]


class RetentionPolicy(models.Model):
    """How long one tier keeps its data; applied by the retention task with drop_chunks.

    Which policies are allowed is tiers.check_retention_policy's to say: the admin's form and
    `manage.py retention set` ask it before saving one."""

    TIER_CHOICES = [("raw", "raw samples"), ("1m", "1-minute tier"), ("1h", "1-hour tier")]
    DEFAULT_DAYS = {"raw": 14, "1m": 90, "1h": 730}

    tier = models.CharField(max_length=8, primary_key=True, choices=TIER_CHOICES)
    days = models.PositiveIntegerField(help_text="Data older than this many days is dropped.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["tier"]

    def __str__(self) -> str:
        return f"{self.tier}: {self.days} days"


class MaintenanceRun(models.Model):
    """When one of beat's database tasks (refresh_tiers, compress_chunks, apply_retention)
    last succeeded and last failed: `manage.py tiers status` and /healthz read it."""

    task = models.CharField(max_length=64, primary_key=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return self.task

    @property
    def failing(self) -> bool:
        return self.failed_at is not None and (self.succeeded_at is None or self.failed_at > self.succeeded_at)


SAMPLE_TABLES = (
    "monitoring_snapshot",
    "monitoring_snapshotlabel",
    "monitoring_gpusample",
    "monitoring_disksample",
    "monitoring_xiderror",
)


@receiver(pre_delete, sender=MonitoredServer)
def delete_samples_of_server(sender, instance: MonitoredServer, **kwargs) -> None:
    """A deleted server takes its samples along (the admin's bulk delete included)."""
    with connection.cursor() as cursor:
        for table in SAMPLE_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE server_id = %s", [instance.id])


# Alerting's rows live in its package; imported here so that Django finds them.
from .alerts.models import AlertChannel, AlertDelivery, AlertEpisode, AlertRule, AlertSilence  # noqa: E402, F401

# Workload ranges live in their package; imported here so that Django finds them.
from .workloads.models import Workload  # noqa: E402, F401
