"""What a batch of samples says of its workloads, and the CTEs of ingest's statement that write it.

The agent sends each GPU process's workload inside the process (`{"kind", "id", "name", "user",
"labels"}`). Ingest keeps, in the process entry of the GPU row, only the reference (`kind`, `id`):
what the workload is (name, user, labels) and when it ran live in one row per range
(`monitoring_workload`), extended by the statement that writes the samples. So a workload costs
the ingest path no read of its own and no extra round trip; a sample without workloads costs an
empty JSON parameter.

Each web process remembers what it last wrote of each server's workloads (`changes`, `written`):
a running workload whose GPUs, name, user and labels are unchanged costs nothing until its range
has moved on by MONITORING_WORKLOAD_RESOLUTION_SECONDS (30 s), so a stored range's end is at most
that far behind while the workload runs; the first sample without it writes its true end. A
process that does not remember (a restart, another process) writes what it sees, which is never
wrong, only more writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# The CTEs for ingest's one statement (ingest/store.py). They expect a CTE `snap` of the snapshots
# the statement wrote (nothing is written for a statement that wrote none: a resend, or a failed
# guard) and read the parameters server, workloads (the rows of `split_processes`, as JSON) and
# workload_gap (seconds: a workload seen again after a longer gap starts a new range). Each
# range sent extends the stored range of the same workload it lies within the gap of, if there is
# one (only where something changed), and is inserted otherwise.
INGEST_CTES = """
seen AS (
    SELECT * FROM jsonb_to_recordset(%(workloads)s::jsonb) AS r (
        n int, kind text, workload_id text, name text, username text, labels jsonb, gpus smallint[],
        first_seen timestamptz, last_seen timestamptz)
    WHERE EXISTS (SELECT FROM snap)
),
matched AS (
    SELECT DISTINCT ON (w.n) w.n, t.id
    FROM seen w JOIN monitoring_workload t ON t.server_id = %(server)s AND t.kind = w.kind
        AND t.workload_id = w.workload_id
        AND t.last_seen >= w.first_seen - make_interval(secs => %(workload_gap)s)
        AND t.first_seen <= w.last_seen + make_interval(secs => %(workload_gap)s)
    ORDER BY w.n, t.last_seen DESC
),
extended AS (
    UPDATE monitoring_workload t SET
        first_seen = least(t.first_seen, w.first_seen),
        last_seen = greatest(t.last_seen, w.last_seen),
        gpus = ARRAY(SELECT DISTINCT g FROM unnest(t.gpus || w.gpus) g ORDER BY g),
        name = coalesce(w.name, t.name),
        username = coalesce(w.username, t.username),
        labels = t.labels || coalesce(w.labels, '{}'::jsonb)
    FROM matched m JOIN seen w ON w.n = m.n
    WHERE t.id = m.id AND (
        w.last_seen > t.last_seen OR w.first_seen < t.first_seen OR NOT t.gpus @> w.gpus
        OR (w.name IS NOT NULL AND w.name IS DISTINCT FROM t.name)
        OR (w.username IS NOT NULL AND w.username IS DISTINCT FROM t.username)
        OR NOT t.labels @> coalesce(w.labels, '{}'::jsonb))
    RETURNING t.id
),
started AS (
    INSERT INTO monitoring_workload
        (server_id, kind, workload_id, name, username, labels, gpus, first_seen, last_seen)
    SELECT %(server)s, w.kind, w.workload_id, w.name, w.username, coalesce(w.labels, '{}'::jsonb), w.gpus,
           w.first_seen, w.last_seen
    FROM seen w WHERE NOT EXISTS (SELECT FROM matched m WHERE m.n = w.n)
    ON CONFLICT DO NOTHING
)""".strip()


def split_processes(
    rows: list[tuple[datetime, list[dict[str, Any]]]], gap_seconds: float
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """`rows`: per sample, oldest first, its collected_at and GPU rows (each with `processes`).
    Returns the GPU rows' process lists with each workload cut to its reference (`{"kind", "id"}`;
    a process without one is as it came, without the key), in the order of the GPU rows, and the
    workload ranges the samples show, for INGEST_CTES: one per workload and stretch without a gap
    longer than gap_seconds, with the GPUs it was seen on and its newest name, user and labels."""
    gap = timedelta(seconds=gap_seconds)
    processes_out: list[list[dict[str, Any]]] = []
    ranges: list[dict[str, Any]] = []
    open_ranges: dict[tuple[str, str], dict[str, Any]] = {}
    for at, gpus in rows:
        for gpu in gpus:
            kept = []
            for process in gpu.get("processes") or ():
                workload = process.get("workload")
                if not workload:
                    kept.append({k: v for k, v in process.items() if k != "workload"})
                    continue
                key = (workload["kind"], workload["id"])
                kept.append({**process, "workload": {"kind": key[0], "id": key[1]}})
                current = open_ranges.get(key)
                if current is None or at - current["last_seen"] > gap:
                    current = open_ranges[key] = {
                        "n": len(ranges),
                        "kind": key[0],
                        "workload_id": key[1],
                        "name": None,
                        "username": None,
                        "labels": {},
                        "gpus": set(),
                        "first_seen": at,
                        "last_seen": at,
                    }
                    ranges.append(current)
                current["last_seen"] = max(current["last_seen"], at)
                current["gpus"].add(gpu["gpu_index"])
                current["name"] = workload.get("name") or current["name"]
                current["username"] = workload.get("user") or current["username"]
                current["labels"].update(workload.get("labels") or {})
            processes_out.append(kept if gpu.get("processes") is not None else None)
    for found in ranges:
        found["gpus"] = sorted(found["gpus"])
    return processes_out, ranges


@dataclass
class _Written:
    """What this process last wrote of one workload's running range, and when it last saw it."""

    first_seen: datetime
    last_written: datetime
    last_seen: datetime
    gpus: frozenset
    details: tuple


# Per server id, per (kind, id): what this process wrote of the range running now.
_written: dict[int, dict[tuple[str, str], _Written]] = {}


def _details(found: dict[str, Any]) -> tuple:
    return found["name"], found["username"], tuple(sorted(found["labels"].items()))


def _key(found: dict[str, Any]) -> tuple[str, str]:
    return found["kind"], found["workload_id"]


def changes(
    server_id: int, ranges: list[dict[str, Any]], newest: datetime, gap_seconds: float, resolution_seconds: float
) -> list[dict[str, Any]]:
    """Of the ranges a batch shows (split_processes), those the table needs, numbered for
    INGEST_CTES; and the true ends of the workloads this process saw running on the server that the
    batch, up to its newest sample, no longer shows."""
    gap, resolution = timedelta(seconds=gap_seconds), timedelta(seconds=resolution_seconds)
    known = _written.get(server_id, {})
    needed = []
    for found in ranges:
        was = known.get(_key(found))
        if (
            was is None
            or found["first_seen"] - was.last_seen > gap
            or found["first_seen"] < was.first_seen
            or not was.gpus.issuperset(found["gpus"])
            or _details(found) != was.details
            or found["last_seen"] - was.last_written >= resolution
        ):
            needed.append(found)
    shown = {_key(found) for found in ranges}
    for key, was in known.items():
        if key not in shown and newest > was.last_seen > was.last_written:
            name, username, labels = was.details
            end = {"first_seen": was.last_seen, "last_seen": was.last_seen, "gpus": sorted(was.gpus)}
            needed.append(
                {
                    "kind": key[0],
                    "workload_id": key[1],
                    "name": name,
                    "username": username,
                    "labels": dict(labels),
                    **end,
                }
            )
    return [{**found, "n": n} for n, found in enumerate(needed)]


def written(
    server_id: int, ranges: list[dict[str, Any]], sent: list[dict[str, Any]], newest: datetime, gap_seconds: float
) -> None:
    """After the statement that wrote `sent` (from changes) succeeded: remember what it wrote and
    when each workload the batch shows was last seen; forget those that left the GPUs."""
    if len(_written) > 10_000:
        _written.clear()
    gap = timedelta(seconds=gap_seconds)
    known = _written.setdefault(server_id, {})
    shown = {_key(found) for found in ranges}
    for found in sent:
        if _key(found) not in shown:
            continue  # a true end
        was = known.get(_key(found))
        if was is None or found["first_seen"] - was.last_seen > gap:
            known[_key(found)] = _Written(
                found["first_seen"], found["last_seen"], found["last_seen"], frozenset(found["gpus"]), _details(found)
            )
        else:
            was.first_seen = min(was.first_seen, found["first_seen"])
            was.last_written = max(was.last_written, found["last_seen"])
            was.gpus = was.gpus | frozenset(found["gpus"])
            was.details = _details(found)
    for found in ranges:
        was = known.get(_key(found))
        if was is not None and found["last_seen"] > was.last_seen:
            was.last_seen = found["last_seen"]
    # Those the batch no longer shows have had their end written (or needed none): forgotten.
    for key in [key for key, was in known.items() if key not in shown and newest > was.last_seen]:
        del known[key]
