"""The server row's counters: every statement that writes them lives here.

`snapshot_count`, `latest_snapshot_at`, `latest_gpu_top_util_percent`,
`sample_interval_seconds`, `last_seen_at` and the current bottleneck
(`bottleneck_label`, `bottleneck_since`, `bottleneck_at`) let the servers list and the
latest-snapshot lookup answer without scanning a hypertable. Four writers keep them:

- ingest, in the same statement as the sample (`INGEST_CTES`: no extra round trip);
- the classifier, after labelling a batch (`record_bottleneck`);
- retention, before dropping a raw chunk (`forget_chunk`);
- a bulk load (seed_history), once at the end (`recount`).
"""

from __future__ import annotations

from datetime import datetime

# What ingest's `snap` CTE returns of each snapshot it wrote, beside id and collected_at, for
# the server's "latest" figures.
LATEST_COLUMNS = "gpu_top_util_percent"
# The server-bookkeeping CTEs of ingest's one statement. They expect a CTE `snap` that returns
# the snapshots it inserted (none for samples already stored) with collected_at and
# LATEST_COLUMNS, a CTE `sent` of every sample's collected_at and interval (seconds since its
# previous sample, or null), and read the parameters server, now and what the agent says about itself:
# agent_version, agent_hostname, agent_platform, agent_python, agent_labels (null keeps the
# stored value). `server` returns the server's newest sample time after the statement.
INGEST_CTES = """
written AS (
    -- The newest snapshot written now.
    SELECT s.collected_at AS at, s.gpu_top_util_percent AS top, v.interval
    FROM snap s JOIN sent v ON v.collected_at = s.collected_at
    ORDER BY s.collected_at DESC LIMIT 1
),
newest AS (
    -- Whether it is the server's newest: only then does it set the "latest" figures.
    SELECT w.at, w.top, w.interval FROM monitoring_monitoredserver m, written w
    WHERE m.id = %(server)s AND (m.latest_snapshot_at IS NULL OR m.latest_snapshot_at < w.at)
),
server AS (
    UPDATE monitoring_monitoredserver SET
        last_seen_at = %(now)s,
        snapshot_count = snapshot_count + (SELECT count(*) FROM snap),
        latest_snapshot_at = coalesce((SELECT at FROM newest), latest_snapshot_at),
        latest_gpu_top_util_percent = CASE WHEN EXISTS (SELECT FROM newest)
            THEN (SELECT top FROM newest) ELSE latest_gpu_top_util_percent END,
        sample_interval_seconds = coalesce((SELECT interval FROM newest), sample_interval_seconds),
        last_agent_version = COALESCE(%(agent_version)s::text, last_agent_version),
        hostname = COALESCE(%(agent_hostname)s::text, hostname),
        agent_platform = COALESCE(%(agent_platform)s::text, agent_platform),
        agent_python = COALESCE(%(agent_python)s::text, agent_python),
        agent_labels = COALESCE(%(agent_labels)s::jsonb, agent_labels)
    WHERE id = %(server)s
    RETURNING latest_snapshot_at
)""".strip()

BOTTLENECK_SQL = """
UPDATE monitoring_monitoredserver SET
    bottleneck_since = CASE WHEN bottleneck_label = %(label)s AND %(whole_batch)s
        THEN bottleneck_since ELSE %(since)s END,
    bottleneck_label = %(label)s,
    bottleneck_at = %(at)s
WHERE id = %(server)s AND (bottleneck_at IS NULL OR bottleneck_at <= %(at)s)
"""


def record_bottleneck(cursor, server_id: int, results: list[tuple[datetime, str, float, str]]) -> None:
    """The server's current bottleneck, and since when it has held (for the fleet overview),
    from one classified batch of (collected_at, label, confidence, reason), oldest first."""
    at, label = results[-1][0], results[-1][1]
    start = len(results) - 1
    while start > 0 and results[start - 1][1] == label:
        start -= 1
    # A run that fills the whole batch may have begun before it: keep the stored start then.
    params = {"server": server_id, "label": label, "at": at, "since": results[start][0], "whole_batch": start == 0}
    cursor.execute(BOTTLENECK_SQL, params)


def forget_chunk(cursor, chunk: str) -> None:
    """Take the snapshots of a raw chunk about to be dropped off their servers' counts, so that
    the counts stay exact without ever counting on a request path. `chunk` is the chunk's
    schema-qualified name, as TimescaleDB reports it."""
    cursor.execute(f"SELECT server_id, count(*) FROM {chunk} GROUP BY server_id")
    for server_id, count in cursor.fetchall():
        cursor.execute(
            "UPDATE monitoring_monitoredserver SET snapshot_count = greatest(snapshot_count - %s, 0), "
            "latest_snapshot_at = CASE WHEN snapshot_count - %s <= 0 THEN NULL ELSE latest_snapshot_at END "
            "WHERE id = %s",
            [count, count, server_id],
        )


RECOUNT_SQL = """
WITH c AS (SELECT count(*) AS n, max(collected_at) AS newest
           FROM monitoring_snapshot WHERE server_id = %(id)s),
     l AS (SELECT bottleneck_label AS label, gpu_top_util_percent AS top
           FROM monitoring_snapshot, c WHERE server_id = %(id)s AND collected_at = c.newest),
     -- Since when the newest label has held: just after the last sample with another one.
     run AS (SELECT min(collected_at) AS since FROM monitoring_snapshot, l
             WHERE server_id = %(id)s AND collected_at > coalesce(
                 (SELECT max(collected_at) FROM monitoring_snapshot, l
                  WHERE server_id = %(id)s AND bottleneck_label IS DISTINCT FROM l.label),
                 '-infinity'))
UPDATE monitoring_monitoredserver s SET
    snapshot_count = c.n, latest_snapshot_at = c.newest,
    last_seen_at = greatest(s.last_seen_at, c.newest), sample_interval_seconds = %(interval)s,
    latest_gpu_top_util_percent = l.top, bottleneck_label = l.label,
    bottleneck_since = run.since, bottleneck_at = c.newest
FROM c, l, run WHERE s.id = %(id)s
"""


def recount(cursor, server_id: int, interval_seconds: float) -> None:
    """Set every counter of one server from its snapshots, after a bulk load that bypassed
    ingest (and the classifier, its rows being labelled already). Counts the server's rows:
    never on a request path."""
    cursor.execute(RECOUNT_SQL, {"id": server_id, "interval": interval_seconds})
