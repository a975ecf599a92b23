"""The second part of the snapshot tiers as migration 0007 made them, frozen.

Per bucket, the sums over every sample's GPUs (GPU samples, utilization, energy): the fleet report
reads these instead of one row per GPU. Made by whichever backend made the first part. On rollup
tables the buckets already rolled up are filled from the GPU tiers; continuous aggregates
materialize from the raw rows still kept at beat's next refresh (older buckets stay empty there).
"""

CONTINUOUS = ('CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_p2_1m WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 minute', "
 'r.collected_at) AS bucket, count(*) AS sample_count, sum(r.gpu_count) AS gpu_count_sum, '
 'sum(r.gpu_util_total_percent) AS gpu_util_total_percent_sum, sum(r.gpu_energy_joules) AS '
 "gpu_energy_joules_sum FROM monitoring_snapshot r   GROUP BY r.server_id, time_bucket(INTERVAL '1 minute', "
 'r.collected_at) WITH NO DATA',
 'CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_p2_1h WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 hour', r.bucket) AS "
 'bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.gpu_count_sum) AS gpu_count_sum, '
 'sum(r.gpu_util_total_percent_sum) AS gpu_util_total_percent_sum, sum(r.gpu_energy_joules_sum) AS '
 "gpu_energy_joules_sum FROM monitoring_snapshot_p2_1m r   GROUP BY r.server_id, time_bucket(INTERVAL '1 "
 "hour', r.bucket) WITH NO DATA")
ROLLUP = (('monitoring_snapshot_p2_1m',
  'CREATE TABLE IF NOT EXISTS monitoring_snapshot_p2_1m (server_id bigint NOT NULL, bucket timestamptz NOT '
  'NULL, sample_count bigint NOT NULL, gpu_count_sum double precision, gpu_util_total_percent_sum double '
  'precision, gpu_energy_joules_sum double precision, UNIQUE (server_id, bucket))',
  '7 days'),
 ('monitoring_snapshot_p2_1h',
  'CREATE TABLE IF NOT EXISTS monitoring_snapshot_p2_1h (server_id bigint NOT NULL, bucket timestamptz NOT '
  'NULL, sample_count bigint NOT NULL, gpu_count_sum double precision, gpu_util_total_percent_sum double '
  'precision, gpu_energy_joules_sum double precision, UNIQUE (server_id, bucket))',
  '90 days'))
CREATE_HYPERTABLE = "SELECT create_hypertable(%s, 'bucket', chunk_time_interval => %s::interval, if_not_exists => true)"

# Rollup tables: what is rolled up already, from the GPU tiers of the same tier.
BACKFILL = (
    (
        "INSERT INTO monitoring_snapshot_p2_{tier} (server_id, bucket, sample_count, gpu_count_sum, "
        "gpu_util_total_percent_sum, gpu_energy_joules_sum) "
        "SELECT s.server_id, s.bucket, s.sample_count, coalesce(g.n, 0), g.u, e.j "
        "FROM monitoring_snapshot_{tier} s "
        "LEFT JOIN (SELECT server_id, bucket, sum(sample_count) AS n, "
        "sum(utilization_gpu_percent_avg * sample_count) AS u FROM monitoring_gpusample_{tier} "
        "GROUP BY server_id, bucket) g USING (server_id, bucket) "
        "LEFT JOIN (SELECT server_id, bucket, sum(energy_joules_sum) AS j FROM monitoring_gpusample_p2_{tier} "
        "GROUP BY server_id, bucket) e USING (server_id, bucket) "
        "ON CONFLICT DO NOTHING"
    ),
)


def _is_continuous(cursor) -> bool:
    cursor.execute(
        "SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'monitoring_snapshot_1m')"
    )
    return cursor.fetchone()[0]


def install(cursor) -> None:
    if _is_continuous(cursor):
        for sql in CONTINUOUS:
            cursor.execute(sql)
        return
    for relation, create, chunk in ROLLUP:
        cursor.execute(create)
        cursor.execute(CREATE_HYPERTABLE, [relation, chunk])
    for tier in ("1m", "1h"):
        for sql in BACKFILL:
            cursor.execute(sql.format(tier=tier))


def uninstall(cursor) -> None:
    kind = "MATERIALIZED VIEW" if _is_continuous(cursor) else "TABLE"
    for relation in ("monitoring_snapshot_p2_1h", "monitoring_snapshot_p2_1m"):
        cursor.execute(f"DROP {kind} IF EXISTS {relation} CASCADE")
