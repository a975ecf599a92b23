"""Workload ranges (monitoring/models.py imports them, so that Django finds them)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Workload(models.Model):
    """One workload seen on one server over one unbroken stretch of time: from the first sample
    that showed one of its processes on a GPU to the last. Seen again after a gap longer than
    MONITORING_RATE_MAX_GAP_SECONDS, it starts a new row.

    `kind` is slurm, kubernetes, container or process; `workload_id` the scheduler's id (a Slurm
    job id, a pod UID, a container id, a process group id). Ingest writes these rows in the
    statement that writes the samples (ranges.py): reports by job or user join them to the
    samples and tiers on (server, time)."""

    KINDS = [
        ("slurm", "Slurm job"),
        ("kubernetes", "Kubernetes pod"),
        ("container", "container"),
        ("process", "process"),
    ]

    server = models.ForeignKey("monitoring.MonitoredServer", on_delete=models.CASCADE, related_name="workloads")
    kind = models.CharField(max_length=16, choices=KINDS)
    workload_id = models.CharField(max_length=128)
    name = models.CharField(max_length=256, null=True, blank=True)
    username = models.CharField(max_length=128, null=True, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    # The GPU indexes its processes were seen on, ascending.
    gpus = ArrayField(models.SmallIntegerField(), default=list, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "kind", "workload_id", "first_seen"], name="workload_server_kind_id_first_uniq"
            ),
        ]
        indexes = [
            # Running and recent workloads, newest first; and a workload's ranges on one server.
            models.Index(fields=["last_seen"], name="workload_last_seen_idx"),
            models.Index(fields=["server", "kind", "workload_id", "last_seen"], name="workload_server_key_idx"),
        ]
        ordering = ["-last_seen", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.workload_id}"
