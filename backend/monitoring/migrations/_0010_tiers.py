"""The labels' tiers as migration 0010 made them, frozen.

Labels moved out of the snapshot rows into a narrow hypertable of their own
(`monitoring_snapshotlabel`), appended once per snapshot, so a snapshot is written once and never
updated. Its tiers (1 minute, 1 hour, 1 day) keep per bucket the labelled samples per label and
their GPUs per label. Rollup tables are filled from what the snapshot tiers kept of the labels
(their `bn_<label>` and `gpu_count_bn_<label>` columns), so no history is lost; continuous
aggregates materialize from the label rows at beat's next refresh, and older buckets are read
from the snapshot tiers' columns (tiers.definitions.LEGACY_LABELS).
"""

from monitoring.migrations import _0007_tiers

CONTINUOUS = ('CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshotlabel_1m WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 minute', "
 "r.collected_at) AS bucket, count(*) AS sample_count, count(*) FILTER (WHERE r.label = 'gpu-bound') AS "
 "bn_gpu_bound, count(*) FILTER (WHERE r.label = 'cpu-bound') AS bn_cpu_bound, count(*) FILTER (WHERE "
 "r.label = 'io-bound') AS bn_io_bound, count(*) FILTER (WHERE r.label = 'memory-bound') AS bn_memory_bound, "
 "count(*) FILTER (WHERE r.label = 'gpu-throttled') AS bn_gpu_throttled, count(*) FILTER (WHERE r.label = "
 "'gpu-idle-held') AS bn_gpu_idle_held, count(*) FILTER (WHERE r.label = 'idle') AS bn_idle, count(*) FILTER "
 "(WHERE r.label = 'balanced') AS bn_balanced, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = "
 "'gpu-bound'), 0) AS gpu_count_bn_gpu_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = "
 "'cpu-bound'), 0) AS gpu_count_bn_cpu_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = 'io-bound'), "
 "0) AS gpu_count_bn_io_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = 'memory-bound'), 0) AS "
 "gpu_count_bn_memory_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = 'gpu-throttled'), 0) AS "
 "gpu_count_bn_gpu_throttled, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = 'gpu-idle-held'), 0) AS "
 "gpu_count_bn_gpu_idle_held, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = 'idle'), 0) AS "
 "gpu_count_bn_idle, coalesce(sum(r.gpu_count) FILTER (WHERE r.label = 'balanced'), 0) AS "
 "gpu_count_bn_balanced FROM monitoring_snapshotlabel r   GROUP BY r.server_id, time_bucket(INTERVAL '1 "
 "minute', r.collected_at) WITH NO DATA",
 'CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshotlabel_1h WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 hour', r.bucket) AS "
 'bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.bn_gpu_bound)::bigint AS bn_gpu_bound, '
 'sum(r.bn_cpu_bound)::bigint AS bn_cpu_bound, sum(r.bn_io_bound)::bigint AS bn_io_bound, '
 'sum(r.bn_memory_bound)::bigint AS bn_memory_bound, sum(r.bn_gpu_throttled)::bigint AS bn_gpu_throttled, '
 'sum(r.bn_gpu_idle_held)::bigint AS bn_gpu_idle_held, sum(r.bn_idle)::bigint AS bn_idle, '
 'sum(r.bn_balanced)::bigint AS bn_balanced, sum(r.gpu_count_bn_gpu_bound)::bigint AS '
 'gpu_count_bn_gpu_bound, sum(r.gpu_count_bn_cpu_bound)::bigint AS gpu_count_bn_cpu_bound, '
 'sum(r.gpu_count_bn_io_bound)::bigint AS gpu_count_bn_io_bound, sum(r.gpu_count_bn_memory_bound)::bigint AS '
 'gpu_count_bn_memory_bound, sum(r.gpu_count_bn_gpu_throttled)::bigint AS gpu_count_bn_gpu_throttled, '
 'sum(r.gpu_count_bn_gpu_idle_held)::bigint AS gpu_count_bn_gpu_idle_held, sum(r.gpu_count_bn_idle)::bigint '
 'AS gpu_count_bn_idle, sum(r.gpu_count_bn_balanced)::bigint AS gpu_count_bn_balanced FROM '
 "monitoring_snapshotlabel_1m r   GROUP BY r.server_id, time_bucket(INTERVAL '1 hour', r.bucket) WITH NO "
 'DATA',
 'CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshotlabel_1d WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 day', r.bucket) AS "
 'bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.bn_gpu_bound)::bigint AS bn_gpu_bound, '
 'sum(r.bn_cpu_bound)::bigint AS bn_cpu_bound, sum(r.bn_io_bound)::bigint AS bn_io_bound, '
 'sum(r.bn_memory_bound)::bigint AS bn_memory_bound, sum(r.bn_gpu_throttled)::bigint AS bn_gpu_throttled, '
 'sum(r.bn_gpu_idle_held)::bigint AS bn_gpu_idle_held, sum(r.bn_idle)::bigint AS bn_idle, '
 'sum(r.bn_balanced)::bigint AS bn_balanced, sum(r.gpu_count_bn_gpu_bound)::bigint AS '
 'gpu_count_bn_gpu_bound, sum(r.gpu_count_bn_cpu_bound)::bigint AS gpu_count_bn_cpu_bound, '
 'sum(r.gpu_count_bn_io_bound)::bigint AS gpu_count_bn_io_bound, sum(r.gpu_count_bn_memory_bound)::bigint AS '
 'gpu_count_bn_memory_bound, sum(r.gpu_count_bn_gpu_throttled)::bigint AS gpu_count_bn_gpu_throttled, '
 'sum(r.gpu_count_bn_gpu_idle_held)::bigint AS gpu_count_bn_gpu_idle_held, sum(r.gpu_count_bn_idle)::bigint '
 'AS gpu_count_bn_idle, sum(r.gpu_count_bn_balanced)::bigint AS gpu_count_bn_balanced FROM '
 "monitoring_snapshotlabel_1h r   GROUP BY r.server_id, time_bucket(INTERVAL '1 day', r.bucket) WITH NO DATA")
ROLLUP = (('monitoring_snapshotlabel_1m',
  'CREATE TABLE IF NOT EXISTS monitoring_snapshotlabel_1m (server_id bigint NOT NULL, bucket timestamptz NOT '
  'NULL, sample_count bigint NOT NULL, bn_gpu_bound bigint NOT NULL DEFAULT 0, bn_cpu_bound bigint NOT NULL '
  'DEFAULT 0, bn_io_bound bigint NOT NULL DEFAULT 0, bn_memory_bound bigint NOT NULL DEFAULT 0, '
  'bn_gpu_throttled bigint NOT NULL DEFAULT 0, bn_gpu_idle_held bigint NOT NULL DEFAULT 0, bn_idle bigint '
  'NOT NULL DEFAULT 0, bn_balanced bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_bound bigint NOT NULL DEFAULT '
  '0, gpu_count_bn_cpu_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_io_bound bigint NOT NULL DEFAULT 0, '
  'gpu_count_bn_memory_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_throttled bigint NOT NULL DEFAULT '
  '0, gpu_count_bn_gpu_idle_held bigint NOT NULL DEFAULT 0, gpu_count_bn_idle bigint NOT NULL DEFAULT 0, '
  'gpu_count_bn_balanced bigint NOT NULL DEFAULT 0, UNIQUE (server_id, bucket))',
  '7 days'),
 ('monitoring_snapshotlabel_1h',
  'CREATE TABLE IF NOT EXISTS monitoring_snapshotlabel_1h (server_id bigint NOT NULL, bucket timestamptz NOT '
  'NULL, sample_count bigint NOT NULL, bn_gpu_bound bigint NOT NULL DEFAULT 0, bn_cpu_bound bigint NOT NULL '
  'DEFAULT 0, bn_io_bound bigint NOT NULL DEFAULT 0, bn_memory_bound bigint NOT NULL DEFAULT 0, '
  'bn_gpu_throttled bigint NOT NULL DEFAULT 0, bn_gpu_idle_held bigint NOT NULL DEFAULT 0, bn_idle bigint '
  'NOT NULL DEFAULT 0, bn_balanced bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_bound bigint NOT NULL DEFAULT '
  '0, gpu_count_bn_cpu_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_io_bound bigint NOT NULL DEFAULT 0, '
  'gpu_count_bn_memory_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_throttled bigint NOT NULL DEFAULT '
  '0, gpu_count_bn_gpu_idle_held bigint NOT NULL DEFAULT 0, gpu_count_bn_idle bigint NOT NULL DEFAULT 0, '
  'gpu_count_bn_balanced bigint NOT NULL DEFAULT 0, UNIQUE (server_id, bucket))',
  '90 days'),
 ('monitoring_snapshotlabel_1d',
  'CREATE TABLE IF NOT EXISTS monitoring_snapshotlabel_1d (server_id bigint NOT NULL, bucket timestamptz NOT '
  'NULL, sample_count bigint NOT NULL, bn_gpu_bound bigint NOT NULL DEFAULT 0, bn_cpu_bound bigint NOT NULL '
  'DEFAULT 0, bn_io_bound bigint NOT NULL DEFAULT 0, bn_memory_bound bigint NOT NULL DEFAULT 0, '
  'bn_gpu_throttled bigint NOT NULL DEFAULT 0, bn_gpu_idle_held bigint NOT NULL DEFAULT 0, bn_idle bigint '
  'NOT NULL DEFAULT 0, bn_balanced bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_bound bigint NOT NULL DEFAULT '
  '0, gpu_count_bn_cpu_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_io_bound bigint NOT NULL DEFAULT 0, '
  'gpu_count_bn_memory_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_throttled bigint NOT NULL DEFAULT '
  '0, gpu_count_bn_gpu_idle_held bigint NOT NULL DEFAULT 0, gpu_count_bn_idle bigint NOT NULL DEFAULT 0, '
  'gpu_count_bn_balanced bigint NOT NULL DEFAULT 0, UNIQUE (server_id, bucket))',
  '365 days'))
FILL_DAY = ('INSERT INTO monitoring_snapshotlabel_1d (server_id, bucket, sample_count, bn_gpu_bound, bn_cpu_bound, '
 'bn_io_bound, bn_memory_bound, bn_gpu_throttled, bn_gpu_idle_held, bn_idle, bn_balanced, '
 'gpu_count_bn_gpu_bound, gpu_count_bn_cpu_bound, gpu_count_bn_io_bound, gpu_count_bn_memory_bound, '
 'gpu_count_bn_gpu_throttled, gpu_count_bn_gpu_idle_held, gpu_count_bn_idle, gpu_count_bn_balanced) SELECT '
 "r.server_id, time_bucket(INTERVAL '1 day', r.bucket) AS bucket, sum(r.sample_count)::bigint AS "
 'sample_count, sum(r.bn_gpu_bound)::bigint AS bn_gpu_bound, sum(r.bn_cpu_bound)::bigint AS bn_cpu_bound, '
 'sum(r.bn_io_bound)::bigint AS bn_io_bound, sum(r.bn_memory_bound)::bigint AS bn_memory_bound, '
 'sum(r.bn_gpu_throttled)::bigint AS bn_gpu_throttled, sum(r.bn_gpu_idle_held)::bigint AS bn_gpu_idle_held, '
 'sum(r.bn_idle)::bigint AS bn_idle, sum(r.bn_balanced)::bigint AS bn_balanced, '
 'sum(r.gpu_count_bn_gpu_bound)::bigint AS gpu_count_bn_gpu_bound, sum(r.gpu_count_bn_cpu_bound)::bigint AS '
 'gpu_count_bn_cpu_bound, sum(r.gpu_count_bn_io_bound)::bigint AS gpu_count_bn_io_bound, '
 'sum(r.gpu_count_bn_memory_bound)::bigint AS gpu_count_bn_memory_bound, '
 'sum(r.gpu_count_bn_gpu_throttled)::bigint AS gpu_count_bn_gpu_throttled, '
 'sum(r.gpu_count_bn_gpu_idle_held)::bigint AS gpu_count_bn_gpu_idle_held, sum(r.gpu_count_bn_idle)::bigint '
 'AS gpu_count_bn_idle, sum(r.gpu_count_bn_balanced)::bigint AS gpu_count_bn_balanced FROM '
 "monitoring_snapshotlabel_1h r   GROUP BY r.server_id, time_bucket(INTERVAL '1 day', r.bucket) ON CONFLICT "
 'DO NOTHING')
LABELS = ("gpu_bound", "cpu_bound", "io_bound", "memory_bound", "gpu_throttled", "gpu_idle_held", "idle", "balanced")
# What the snapshot tiers kept of the labels, into the labels' rollup tables of the same tier.
FILL_FROM_SNAPSHOT_TIERS = (
    "INSERT INTO monitoring_snapshotlabel_{tier} (server_id, bucket, sample_count, "
    + ", ".join(f"bn_{label}" for label in LABELS)
    + ", "
    + ", ".join(f"gpu_count_bn_{label}" for label in LABELS)
    + ") SELECT s.server_id, s.bucket, "
    + " + ".join(f"s.bn_{label}" for label in LABELS)
    + ", "
    + ", ".join(f"s.bn_{label}" for label in LABELS)
    + ", "
    + ", ".join(f"coalesce(p.gpu_count_bn_{label}, 0)" for label in LABELS)
    + " FROM monitoring_snapshot_{tier} s LEFT JOIN monitoring_snapshot_p2_{tier} p USING (server_id, bucket) WHERE "
    + " + ".join(f"s.bn_{label}" for label in LABELS)
    + " > 0 ON CONFLICT DO NOTHING"
)
COMPRESSION = (
    "ALTER TABLE monitoring_snapshotlabel SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'server_id', timescaledb.compress_orderby = 'collected_at DESC')"
)
CREATE_HYPERTABLE = _0007_tiers.CREATE_HYPERTABLE
_is_continuous = _0007_tiers._is_continuous


def install(cursor) -> None:
    cursor.execute("SELECT current_setting('timescaledb.license', true)")
    if (cursor.fetchone()[0] or "apache").lower() == "timescale":
        cursor.execute(COMPRESSION)
    if _is_continuous(cursor):
        for sql in CONTINUOUS:
            cursor.execute(sql)
        return
    for relation, create, chunk in ROLLUP:
        cursor.execute(create)
        cursor.execute(CREATE_HYPERTABLE, [relation, chunk])
    for tier in ("1m", "1h"):
        cursor.execute(FILL_FROM_SNAPSHOT_TIERS.format(tier=tier))
    cursor.execute(FILL_DAY)


def uninstall(cursor) -> None:
    kind = "MATERIALIZED VIEW" if _is_continuous(cursor) else "TABLE"
    for tier in ("1d", "1h", "1m"):
        cursor.execute(f"DROP {kind} IF EXISTS monitoring_snapshotlabel_{tier}")
