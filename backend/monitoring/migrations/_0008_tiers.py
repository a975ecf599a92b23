"""The fleet report's tier part as migration 0008 remade it, frozen.

The second part of the snapshot tiers (sums over every sample's GPUs) gains the GPU samples per
bottleneck label, and 1-day buckets built on its 1-hour ones, so that the report reads one
relation and a month is 30 rows a server. Rollup tables take the new columns (filled for buckets
already rolled up in the proportion of the snapshot tiers' label mix, as the report computed them
until then) and a 1-day table filled from the 1-hour one; continuous aggregates take no new
columns, so they are made again and materialize from the raw rows still kept at beat's next
refresh (older buckets stay empty there).
"""

from monitoring.migrations import _0007_tiers

CONTINUOUS = (
    "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_p2_1m WITH (timescaledb.continuous, "
    "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 minute', "
    "r.collected_at) AS bucket, count(*) AS sample_count, sum(r.gpu_count) AS gpu_count_sum, "
    "sum(r.gpu_util_total_percent) AS gpu_util_total_percent_sum, sum(r.gpu_energy_joules) AS "
    "gpu_energy_joules_sum, coalesce(sum(r.gpu_count) FILTER (WHERE r.bottleneck_label = 'gpu-bound'), 0) AS "
    "gpu_count_bn_gpu_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.bottleneck_label = 'cpu-bound'), 0) AS "
    "gpu_count_bn_cpu_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.bottleneck_label = 'io-bound'), 0) AS "
    "gpu_count_bn_io_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.bottleneck_label = 'memory-bound'), 0) AS "
    "gpu_count_bn_memory_bound, coalesce(sum(r.gpu_count) FILTER (WHERE r.bottleneck_label = 'gpu-throttled'), "
    "0) AS gpu_count_bn_gpu_throttled, coalesce(sum(r.gpu_count) FILTER (WHERE r.bottleneck_label = "
    "'gpu-idle-held'), 0) AS gpu_count_bn_gpu_idle_held, coalesce(sum(r.gpu_count) FILTER (WHERE "
    "r.bottleneck_label = 'idle'), 0) AS gpu_count_bn_idle, coalesce(sum(r.gpu_count) FILTER (WHERE "
    "r.bottleneck_label = 'balanced'), 0) AS gpu_count_bn_balanced FROM monitoring_snapshot r   GROUP BY "
    "r.server_id, time_bucket(INTERVAL '1 minute', r.collected_at) WITH NO DATA",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_p2_1h WITH (timescaledb.continuous, "
    "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 hour', r.bucket) AS "
    "bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.gpu_count_sum) AS gpu_count_sum, "
    "sum(r.gpu_util_total_percent_sum) AS gpu_util_total_percent_sum, sum(r.gpu_energy_joules_sum) AS "
    "gpu_energy_joules_sum, sum(r.gpu_count_bn_gpu_bound)::bigint AS gpu_count_bn_gpu_bound, "
    "sum(r.gpu_count_bn_cpu_bound)::bigint AS gpu_count_bn_cpu_bound, sum(r.gpu_count_bn_io_bound)::bigint AS "
    "gpu_count_bn_io_bound, sum(r.gpu_count_bn_memory_bound)::bigint AS gpu_count_bn_memory_bound, "
    "sum(r.gpu_count_bn_gpu_throttled)::bigint AS gpu_count_bn_gpu_throttled, "
    "sum(r.gpu_count_bn_gpu_idle_held)::bigint AS gpu_count_bn_gpu_idle_held, sum(r.gpu_count_bn_idle)::bigint "
    "AS gpu_count_bn_idle, sum(r.gpu_count_bn_balanced)::bigint AS gpu_count_bn_balanced FROM "
    "monitoring_snapshot_p2_1m r   GROUP BY r.server_id, time_bucket(INTERVAL '1 hour', r.bucket) WITH NO DATA",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_p2_1d WITH (timescaledb.continuous, "
    "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 day', r.bucket) AS "
    "bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.gpu_count_sum) AS gpu_count_sum, "
    "sum(r.gpu_util_total_percent_sum) AS gpu_util_total_percent_sum, sum(r.gpu_energy_joules_sum) AS "
    "gpu_energy_joules_sum, sum(r.gpu_count_bn_gpu_bound)::bigint AS gpu_count_bn_gpu_bound, "
    "sum(r.gpu_count_bn_cpu_bound)::bigint AS gpu_count_bn_cpu_bound, sum(r.gpu_count_bn_io_bound)::bigint AS "
    "gpu_count_bn_io_bound, sum(r.gpu_count_bn_memory_bound)::bigint AS gpu_count_bn_memory_bound, "
    "sum(r.gpu_count_bn_gpu_throttled)::bigint AS gpu_count_bn_gpu_throttled, "
    "sum(r.gpu_count_bn_gpu_idle_held)::bigint AS gpu_count_bn_gpu_idle_held, sum(r.gpu_count_bn_idle)::bigint "
    "AS gpu_count_bn_idle, sum(r.gpu_count_bn_balanced)::bigint AS gpu_count_bn_balanced FROM "
    "monitoring_snapshot_p2_1h r   GROUP BY r.server_id, time_bucket(INTERVAL '1 day', r.bucket) WITH NO DATA",
)
DROP_CONTINUOUS = (
    "DROP MATERIALIZED VIEW IF EXISTS monitoring_snapshot_p2_1d",
    "DROP MATERIALIZED VIEW IF EXISTS monitoring_snapshot_p2_1h",
    "DROP MATERIALIZED VIEW IF EXISTS monitoring_snapshot_p2_1m",
)
LABEL_COLUMNS = (
    "gpu_count_bn_gpu_bound",
    "gpu_count_bn_cpu_bound",
    "gpu_count_bn_io_bound",
    "gpu_count_bn_memory_bound",
    "gpu_count_bn_gpu_throttled",
    "gpu_count_bn_gpu_idle_held",
    "gpu_count_bn_idle",
    "gpu_count_bn_balanced",
)
LABEL_COUNTS = (
    "bn_gpu_bound",
    "bn_cpu_bound",
    "bn_io_bound",
    "bn_memory_bound",
    "bn_gpu_throttled",
    "bn_gpu_idle_held",
    "bn_idle",
    "bn_balanced",
)
CREATE_DAY = (
    "CREATE TABLE IF NOT EXISTS monitoring_snapshot_p2_1d (server_id bigint NOT NULL, bucket timestamptz NOT "
    "NULL, sample_count bigint NOT NULL, gpu_count_sum double precision, gpu_util_total_percent_sum double "
    "precision, gpu_energy_joules_sum double precision, gpu_count_bn_gpu_bound bigint NOT NULL DEFAULT 0, "
    "gpu_count_bn_cpu_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_io_bound bigint NOT NULL DEFAULT 0, "
    "gpu_count_bn_memory_bound bigint NOT NULL DEFAULT 0, gpu_count_bn_gpu_throttled bigint NOT NULL DEFAULT 0, "
    "gpu_count_bn_gpu_idle_held bigint NOT NULL DEFAULT 0, gpu_count_bn_idle bigint NOT NULL DEFAULT 0, "
    "gpu_count_bn_balanced bigint NOT NULL DEFAULT 0, UNIQUE (server_id, bucket))"
)
FILL_DAY = (
    "INSERT INTO monitoring_snapshot_p2_1d (server_id, bucket, sample_count, gpu_count_sum, "
    "gpu_util_total_percent_sum, gpu_energy_joules_sum, gpu_count_bn_gpu_bound, gpu_count_bn_cpu_bound, "
    "gpu_count_bn_io_bound, gpu_count_bn_memory_bound, gpu_count_bn_gpu_throttled, gpu_count_bn_gpu_idle_held, "
    "gpu_count_bn_idle, gpu_count_bn_balanced) SELECT server_id, bucket, sample_count, gpu_count_sum, "
    "gpu_util_total_percent_sum, gpu_energy_joules_sum, gpu_count_bn_gpu_bound, gpu_count_bn_cpu_bound, "
    "gpu_count_bn_io_bound, gpu_count_bn_memory_bound, gpu_count_bn_gpu_throttled, gpu_count_bn_gpu_idle_held, "
    "gpu_count_bn_idle, gpu_count_bn_balanced FROM (SELECT r.server_id, time_bucket(INTERVAL '1 day', r.bucket) "
    "AS bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.gpu_count_sum) AS gpu_count_sum, "
    "sum(r.gpu_util_total_percent_sum) AS gpu_util_total_percent_sum, sum(r.gpu_energy_joules_sum) AS "
    "gpu_energy_joules_sum, sum(r.gpu_count_bn_gpu_bound)::bigint AS gpu_count_bn_gpu_bound, "
    "sum(r.gpu_count_bn_cpu_bound)::bigint AS gpu_count_bn_cpu_bound, sum(r.gpu_count_bn_io_bound)::bigint AS "
    "gpu_count_bn_io_bound, sum(r.gpu_count_bn_memory_bound)::bigint AS gpu_count_bn_memory_bound, "
    "sum(r.gpu_count_bn_gpu_throttled)::bigint AS gpu_count_bn_gpu_throttled, "
    "sum(r.gpu_count_bn_gpu_idle_held)::bigint AS gpu_count_bn_gpu_idle_held, sum(r.gpu_count_bn_idle)::bigint "
    "AS gpu_count_bn_idle, sum(r.gpu_count_bn_balanced)::bigint AS gpu_count_bn_balanced FROM "
    "monitoring_snapshot_p2_1h r   GROUP BY r.server_id, time_bucket(INTERVAL '1 day', r.bucket)) s ON CONFLICT "
    "DO NOTHING"
)
# Unchanged since 0007.
CREATE_HYPERTABLE = _0007_tiers.CREATE_HYPERTABLE
_is_continuous = _0007_tiers._is_continuous


def install(cursor) -> None:
    if _is_continuous(cursor):
        for sql in DROP_CONTINUOUS:
            cursor.execute(sql)
        for sql in CONTINUOUS:
            cursor.execute(sql)
        return
    for tier in ("1m", "1h"):
        relation = f"monitoring_snapshot_p2_{tier}"
        adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {c} bigint NOT NULL DEFAULT 0" for c in LABEL_COLUMNS)
        cursor.execute(f"ALTER TABLE {relation} {adds}")
        # What is rolled up already: the bucket's GPU samples in the proportion of its label mix.
        sets = ", ".join(
            f"{c} = round(t.gpu_count_sum * s.{n} / s.sample_count)" for c, n in zip(LABEL_COLUMNS, LABEL_COUNTS)
        )
        cursor.execute(
            f"UPDATE {relation} t SET {sets} FROM monitoring_snapshot_{tier} s "
            "WHERE s.server_id = t.server_id AND s.bucket = t.bucket AND s.sample_count > 0 AND t.gpu_count_sum > 0"
        )
    cursor.execute(CREATE_DAY)
    cursor.execute(CREATE_HYPERTABLE, ["monitoring_snapshot_p2_1d", "365 days"])
    cursor.execute(FILL_DAY)


def uninstall(cursor) -> None:
    if _is_continuous(cursor):
        for sql in DROP_CONTINUOUS:
            cursor.execute(sql)
        for sql in _0007_tiers.CONTINUOUS:
            cursor.execute(sql)
        return
    cursor.execute("DROP TABLE IF EXISTS monitoring_snapshot_p2_1d")
    for tier in ("1m", "1h"):
        drops = ", ".join(f"DROP COLUMN IF EXISTS {c}" for c in LABEL_COLUMNS)
        cursor.execute(f"ALTER TABLE monitoring_snapshot_p2_{tier} {drops}")
