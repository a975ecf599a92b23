"""The server row's counters: every statement that writes them lives here.

`snapshot_count`, `latest_snapshot_at`, `latest_gpu_top_util_percent`,
`sample_interval_seconds`, `last_seen_at` and the current bottleneck
(`bottleneck_label`, `bottleneck_since`, `bottleneck_at`) let the servers list and the
latest-snapshot lookup answer without scanning a hypertable. Four writers keep them:

- ingest, in the same statement as the sample (`INGEST_CTES`: no extra round trip);
- the classifier, after each pass (`record_pass`);
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
# agent_version, agent_packaging, agent_hostname, agent_platform, agent_python, agent_labels (null keeps the
# stored value), and newest_at, newest_counters (the newest sample sent and its counters).
# `server` returns the server's newest sample time after the statement, and its counters.
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
        -- The counters of the newest sample, when it is the one this statement was told of: the
        -- next sample's rates, for a process that does not hold them.
        latest_counters = CASE WHEN (SELECT at FROM newest) = %(newest_at)s
            THEN %(newest_counters)s::jsonb ELSE latest_counters END,
        -- What the classifier has to label starts at the oldest sample written now, if not before.
        unlabelled_from = least(unlabelled_from, (SELECT min(collected_at) FROM snap)),
        last_agent_version = COALESCE(%(agent_version)s::text, last_agent_version),
        agent_packaging = COALESCE(%(agent_packaging)s::text, agent_packaging),
        hostname = COALESCE(%(agent_hostname)s::text, hostname),
        agent_platform = COALESCE(%(agent_platform)s::text, agent_platform),
        agent_python = COALESCE(%(agent_python)s::text, agent_python),
        agent_labels = COALESCE(%(agent_labels)s::jsonb, agent_labels)
    WHERE id = %(server)s
    RETURNING latest_snapshot_at, latest_counters
)""".strip()

# Per server of a classifier's pass, in one statement: its current bottleneck from the pass's
# labels (if any, and newer than what the row has), and where its unlabelled snapshots now start,
# unless a sample was written for it since the pass read its count.
PASS_SQL = """
UPDATE monitoring_monitoredserver m SET
    bottleneck_since = CASE WHEN v.label IS NULL OR m.bottleneck_at > v.at THEN m.bottleneck_since
        WHEN m.bottleneck_label = v.label AND v.whole THEN m.bottleneck_since ELSE v.since END,
    bottleneck_label = CASE WHEN v.label IS NULL OR m.bottleneck_at > v.at THEN m.bottleneck_label ELSE v.label END,
    bottleneck_at = CASE WHEN v.label IS NULL OR m.bottleneck_at > v.at THEN m.bottleneck_at ELSE v.at END,
    unlabelled_from = CASE WHEN m.snapshot_count = v.count THEN v.next ELSE m.unlabelled_from END
FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bool[], %s::timestamptz[], %s::bigint[])
    AS v (id, label, at, since, whole, next, count)
WHERE m.id = v.id
"""


def record_pass(cursor, passes: list[tuple[int, list[tuple], datetime | None, int]]) -> None:
    """After a classifier's pass, per server (id, its labels oldest first as (collected_at, label,
    ...) or none, where its unlabelled snapshots now start, its snapshot count as the pass read it):
    the server's current bottleneck and since when it has held (for the fleet overview), and
    where the next pass starts."""
    rows = []
    for server_id, results, following, count in passes:
        label = at = since = None
        whole = False
        if results:
            at, label = results[-1][0], results[-1][1]
            start = len(results) - 1
            while start > 0 and results[start - 1][1] == label:
                start -= 1
            # A run that fills the whole batch may have begun before it: keep the stored start then.
            since, whole = results[start][0], start == 0
        rows.append((server_id, label, at, since, whole, following, count))
    cursor.execute(PASS_SQL, [list(column) for column in zip(*rows)], prepare=True)


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
     l AS (SELECT b.label, s.gpu_top_util_percent AS top
           FROM monitoring_snapshot s CROSS JOIN c
           LEFT JOIN monitoring_snapshotlabel b ON b.server_id = s.server_id AND b.collected_at = s.collected_at
           WHERE s.server_id = %(id)s AND s.collected_at = c.newest),
     -- Since when the newest label has held: just after the last sample with another one.
     run AS (SELECT min(s.collected_at) AS since FROM monitoring_snapshot s, l
             WHERE s.server_id = %(id)s AND s.collected_at > coalesce(
                 (SELECT max(s.collected_at) FROM monitoring_snapshot s CROSS JOIN l
                  LEFT JOIN monitoring_snapshotlabel b ON b.server_id = s.server_id AND b.collected_at = s.collected_at
                  WHERE s.server_id = %(id)s AND b.label IS DISTINCT FROM l.label),
                 '-infinity')),
     -- The oldest snapshot the load left unlabelled, if any.
     u AS (SELECT min(s.collected_at) AS first FROM monitoring_snapshot s
           WHERE s.server_id = %(id)s AND NOT EXISTS (SELECT FROM monitoring_snapshotlabel b
               WHERE b.server_id = s.server_id AND b.collected_at = s.collected_at))
UPDATE monitoring_monitoredserver s SET
    snapshot_count = c.n, latest_snapshot_at = c.newest,
    last_seen_at = greatest(s.last_seen_at, c.newest), sample_interval_seconds = %(interval)s,
    latest_gpu_top_util_percent = l.top, bottleneck_label = l.label,
    bottleneck_since = run.since, bottleneck_at = c.newest, unlabelled_from = u.first
FROM c, l, run, u WHERE s.id = %(id)s
"""


def recount(cursor, server_id: int, interval_seconds: float) -> None:
    """Set every counter of one server from its snapshots and their labels, after a bulk load
    that bypassed ingest (and the classifier, its rows being labelled already). Counts the server's rows:
    never on a request path."""
    cursor.execute(RECOUNT_SQL, {"id": server_id, "interval": interval_seconds})
