"""The tier relations and raw-table compression as migration 0002 made them, frozen.

Copied from what monitoring.tiers and monitoring.compression generated when 0002 was
written: a migration must build the same schema whatever those modules say later (a new
metric reaches existing databases through a migration of its own). Which backend is
made still follows the edition and MONITORING_TIER_BACKEND at migration time.
"""

from django.conf import settings

# The continuous aggregates (Timescale-licensed edition), 1m before 1h (built on 1m).
CONTINUOUS = (
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_1m WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 minute', "
        "r.collected_at) AS bucket, count(*) AS sample_count, "
        "avg(r.cpu_usage_percent) AS cpu_usage_percent_avg, "
        "max(r.cpu_usage_percent) AS cpu_usage_percent_max, "
        "avg(r.cpu_iowait_percent) AS cpu_iowait_percent_avg, "
        "max(r.cpu_iowait_percent) AS cpu_iowait_percent_max, avg(r.memory_percent) AS memory_percent_avg, "
        "max(r.memory_percent) AS memory_percent_max, avg(r.swap_percent) AS swap_percent_avg, "
        "max(r.swap_percent) AS swap_percent_max, avg(r.disk_read_bps) AS disk_read_bps_avg, "
        "max(r.disk_read_bps) AS disk_read_bps_max, avg(r.disk_write_bps) AS disk_write_bps_avg, "
        "max(r.disk_write_bps) AS disk_write_bps_max, avg(r.disk_util_percent) AS disk_util_percent_avg, "
        "max(r.disk_util_percent) AS disk_util_percent_max, "
        "avg(r.gpu_top_util_percent) AS gpu_top_util_percent_avg, "
        "max(r.gpu_top_util_percent) AS gpu_top_util_percent_max, "
        "avg(r.network_rx_bps) AS network_rx_bps_avg, max(r.network_rx_bps) AS network_rx_bps_max, "
        "avg(r.network_tx_bps) AS network_tx_bps_avg, max(r.network_tx_bps) AS network_tx_bps_max, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'gpu-bound') AS bn_gpu_bound, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'cpu-bound') AS bn_cpu_bound, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'io-bound') AS bn_io_bound, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'memory-bound') AS bn_memory_bound, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'gpu-throttled') AS bn_gpu_throttled, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'gpu-idle-held') AS bn_gpu_idle_held, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'idle') AS bn_idle, "
        "count(*) FILTER (WHERE r.bottleneck_label = 'balanced') AS bn_balanced FROM monitoring_snapshot r   GROUP BY r.server_id, "
        "time_bucket(INTERVAL '1 minute', r.collected_at) WITH NO DATA"
    ),
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_gpusample_1m WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = true) AS SELECT r.server_id, r.gpu_index, "
        "time_bucket(INTERVAL '1 minute', r.collected_at) AS bucket, count(*) AS sample_count, "
        "avg(r.utilization_gpu_percent) AS utilization_gpu_percent_avg, "
        "max(r.utilization_gpu_percent) AS utilization_gpu_percent_max, "
        "avg(r.memory_percent) AS memory_percent_avg, max(r.memory_percent) AS memory_percent_max, "
        "avg(r.temperature_c) AS temperature_c_avg, max(r.temperature_c) AS temperature_c_max, "
        "avg(r.power_w) AS power_w_avg, "
        "max(r.power_w) AS power_w_max FROM monitoring_gpusample r   GROUP BY r.server_id, r.gpu_index, "
        "time_bucket(INTERVAL '1 minute', r.collected_at) WITH NO DATA"
    ),
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_disksample_1m WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = true) AS SELECT r.server_id, r.device, "
        "time_bucket(INTERVAL '1 minute', r.collected_at) AS bucket, count(*) AS sample_count, "
        "avg(r.read_bps) AS read_bps_avg, max(r.read_bps) AS read_bps_max, "
        "avg(r.write_bps) AS write_bps_avg, max(r.write_bps) AS write_bps_max, "
        "avg(r.util_percent) AS util_percent_avg, "
        "max(r.util_percent) AS util_percent_max FROM monitoring_disksample r   GROUP BY r.server_id, "
        "r.device, time_bucket(INTERVAL '1 minute', r.collected_at) WITH NO DATA"
    ),
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_snapshot_1h WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = true) AS SELECT r.server_id, time_bucket(INTERVAL '1 hour', "
        "r.bucket) AS bucket, sum(r.sample_count)::bigint AS sample_count, "
        "sum(r.cpu_usage_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.cpu_usage_percent_avg IS NOT NULL), "
        "0) AS cpu_usage_percent_avg, max(r.cpu_usage_percent_max) AS cpu_usage_percent_max, "
        "sum(r.cpu_iowait_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.cpu_iowait_percent_avg IS NOT NULL), "
        "0) AS cpu_iowait_percent_avg, max(r.cpu_iowait_percent_max) AS cpu_iowait_percent_max, "
        "sum(r.memory_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.memory_percent_avg IS NOT NULL), "
        "0) AS memory_percent_avg, max(r.memory_percent_max) AS memory_percent_max, "
        "sum(r.swap_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.swap_percent_avg IS NOT NULL), "
        "0) AS swap_percent_avg, max(r.swap_percent_max) AS swap_percent_max, "
        "sum(r.disk_read_bps_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.disk_read_bps_avg IS NOT NULL), "
        "0) AS disk_read_bps_avg, max(r.disk_read_bps_max) AS disk_read_bps_max, "
        "sum(r.disk_write_bps_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.disk_write_bps_avg IS NOT NULL), "
        "0) AS disk_write_bps_avg, max(r.disk_write_bps_max) AS disk_write_bps_max, "
        "sum(r.disk_util_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.disk_util_percent_avg IS NOT NULL), "
        "0) AS disk_util_percent_avg, max(r.disk_util_percent_max) AS disk_util_percent_max, "
        "sum(r.gpu_top_util_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.gpu_top_util_percent_avg IS NOT NULL), "
        "0) AS gpu_top_util_percent_avg, max(r.gpu_top_util_percent_max) AS gpu_top_util_percent_max, "
        "sum(r.network_rx_bps_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.network_rx_bps_avg IS NOT NULL), "
        "0) AS network_rx_bps_avg, max(r.network_rx_bps_max) AS network_rx_bps_max, "
        "sum(r.network_tx_bps_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.network_tx_bps_avg IS NOT NULL), "
        "0) AS network_tx_bps_avg, max(r.network_tx_bps_max) AS network_tx_bps_max, "
        "sum(r.bn_gpu_bound)::bigint AS bn_gpu_bound, sum(r.bn_cpu_bound)::bigint AS bn_cpu_bound, "
        "sum(r.bn_io_bound)::bigint AS bn_io_bound, sum(r.bn_memory_bound)::bigint AS bn_memory_bound, "
        "sum(r.bn_gpu_throttled)::bigint AS bn_gpu_throttled, "
        "sum(r.bn_gpu_idle_held)::bigint AS bn_gpu_idle_held, sum(r.bn_idle)::bigint AS bn_idle, "
        "sum(r.bn_balanced)::bigint AS bn_balanced FROM monitoring_snapshot_1m r   GROUP BY r.server_id, "
        "time_bucket(INTERVAL '1 hour', r.bucket) WITH NO DATA"
    ),
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_gpusample_1h WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = true) AS SELECT r.server_id, r.gpu_index, "
        "time_bucket(INTERVAL '1 hour', r.bucket) AS bucket, sum(r.sample_count)::bigint AS sample_count, "
        "sum(r.utilization_gpu_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.utilization_gpu_percent_avg IS NOT NULL), "
        "0) AS utilization_gpu_percent_avg, "
        "max(r.utilization_gpu_percent_max) AS utilization_gpu_percent_max, "
        "sum(r.memory_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.memory_percent_avg IS NOT NULL), "
        "0) AS memory_percent_avg, max(r.memory_percent_max) AS memory_percent_max, "
        "sum(r.temperature_c_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.temperature_c_avg IS NOT NULL), "
        "0) AS temperature_c_avg, max(r.temperature_c_max) AS temperature_c_max, "
        "sum(r.power_w_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.power_w_avg IS NOT NULL), "
        "0) AS power_w_avg, "
        "max(r.power_w_max) AS power_w_max FROM monitoring_gpusample_1m r   GROUP BY r.server_id, "
        "r.gpu_index, time_bucket(INTERVAL '1 hour', r.bucket) WITH NO DATA"
    ),
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_disksample_1h WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = true) AS SELECT r.server_id, r.device, "
        "time_bucket(INTERVAL '1 hour', r.bucket) AS bucket, sum(r.sample_count)::bigint AS sample_count, "
        "sum(r.read_bps_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.read_bps_avg IS NOT NULL), "
        "0) AS read_bps_avg, max(r.read_bps_max) AS read_bps_max, "
        "sum(r.write_bps_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.write_bps_avg IS NOT NULL), "
        "0) AS write_bps_avg, max(r.write_bps_max) AS write_bps_max, "
        "sum(r.util_percent_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.util_percent_avg IS NOT NULL), "
        "0) AS util_percent_avg, "
        "max(r.util_percent_max) AS util_percent_max FROM monitoring_disksample_1m r   GROUP BY r.server_id, "
        "r.device, time_bucket(INTERVAL '1 hour', r.bucket) WITH NO DATA"
    ),
)

# The rollup hypertables (Apache edition): (relation, CREATE TABLE, chunk interval).
ROLLUP = (
    (
        "monitoring_snapshot_1m",
        (
            "CREATE TABLE IF NOT EXISTS monitoring_snapshot_1m (server_id bigint NOT NULL, "
            "bucket timestamptz NOT NULL, sample_count bigint NOT NULL, cpu_usage_percent_avg double precision, "
            "cpu_usage_percent_max double precision, cpu_iowait_percent_avg double precision, "
            "cpu_iowait_percent_max double precision, memory_percent_avg double precision, "
            "memory_percent_max double precision, swap_percent_avg double precision, "
            "swap_percent_max double precision, disk_read_bps_avg double precision, "
            "disk_read_bps_max double precision, disk_write_bps_avg double precision, "
            "disk_write_bps_max double precision, disk_util_percent_avg double precision, "
            "disk_util_percent_max double precision, gpu_top_util_percent_avg double precision, "
            "gpu_top_util_percent_max double precision, network_rx_bps_avg double precision, "
            "network_rx_bps_max double precision, network_tx_bps_avg double precision, "
            "network_tx_bps_max double precision, bn_gpu_bound bigint NOT NULL DEFAULT 0, "
            "bn_cpu_bound bigint NOT NULL DEFAULT 0, bn_io_bound bigint NOT NULL DEFAULT 0, "
            "bn_memory_bound bigint NOT NULL DEFAULT 0, bn_gpu_throttled bigint NOT NULL DEFAULT 0, "
            "bn_gpu_idle_held bigint NOT NULL DEFAULT 0, bn_idle bigint NOT NULL DEFAULT 0, "
            "bn_balanced bigint NOT NULL DEFAULT 0, UNIQUE (server_id, bucket))"
        ),
        "7 days",
    ),
    (
        "monitoring_gpusample_1m",
        (
            "CREATE TABLE IF NOT EXISTS monitoring_gpusample_1m (server_id bigint NOT NULL, "
            "gpu_index smallint NOT NULL, bucket timestamptz NOT NULL, sample_count bigint NOT NULL, "
            "utilization_gpu_percent_avg double precision, utilization_gpu_percent_max double precision, "
            "memory_percent_avg double precision, memory_percent_max double precision, "
            "temperature_c_avg double precision, temperature_c_max double precision, "
            "power_w_avg double precision, power_w_max double precision, UNIQUE (server_id, bucket, gpu_index))"
        ),
        "7 days",
    ),
    (
        "monitoring_disksample_1m",
        (
            "CREATE TABLE IF NOT EXISTS monitoring_disksample_1m (server_id bigint NOT NULL, "
            "device varchar(64) NOT NULL, bucket timestamptz NOT NULL, sample_count bigint NOT NULL, "
            "read_bps_avg double precision, read_bps_max double precision, write_bps_avg double precision, "
            "write_bps_max double precision, util_percent_avg double precision, "
            "util_percent_max double precision, UNIQUE (server_id, bucket, device))"
        ),
        "7 days",
    ),
    (
        "monitoring_snapshot_1h",
        (
            "CREATE TABLE IF NOT EXISTS monitoring_snapshot_1h (server_id bigint NOT NULL, "
            "bucket timestamptz NOT NULL, sample_count bigint NOT NULL, cpu_usage_percent_avg double precision, "
            "cpu_usage_percent_max double precision, cpu_iowait_percent_avg double precision, "
            "cpu_iowait_percent_max double precision, memory_percent_avg double precision, "
            "memory_percent_max double precision, swap_percent_avg double precision, "
            "swap_percent_max double precision, disk_read_bps_avg double precision, "
            "disk_read_bps_max double precision, disk_write_bps_avg double precision, "
            "disk_write_bps_max double precision, disk_util_percent_avg double precision, "
            "disk_util_percent_max double precision, gpu_top_util_percent_avg double precision, "
            "gpu_top_util_percent_max double precision, network_rx_bps_avg double precision, "
            "network_rx_bps_max double precision, network_tx_bps_avg double precision, "
            "network_tx_bps_max double precision, bn_gpu_bound bigint NOT NULL DEFAULT 0, "
            "bn_cpu_bound bigint NOT NULL DEFAULT 0, bn_io_bound bigint NOT NULL DEFAULT 0, "
            "bn_memory_bound bigint NOT NULL DEFAULT 0, bn_gpu_throttled bigint NOT NULL DEFAULT 0, "
            "bn_gpu_idle_held bigint NOT NULL DEFAULT 0, bn_idle bigint NOT NULL DEFAULT 0, "
            "bn_balanced bigint NOT NULL DEFAULT 0, UNIQUE (server_id, bucket))"
        ),
        "90 days",
    ),
    (
        "monitoring_gpusample_1h",
        (
            "CREATE TABLE IF NOT EXISTS monitoring_gpusample_1h (server_id bigint NOT NULL, "
            "gpu_index smallint NOT NULL, bucket timestamptz NOT NULL, sample_count bigint NOT NULL, "
            "utilization_gpu_percent_avg double precision, utilization_gpu_percent_max double precision, "
            "memory_percent_avg double precision, memory_percent_max double precision, "
            "temperature_c_avg double precision, temperature_c_max double precision, "
            "power_w_avg double precision, power_w_max double precision, UNIQUE (server_id, bucket, gpu_index))"
        ),
        "90 days",
    ),
    (
        "monitoring_disksample_1h",
        (
            "CREATE TABLE IF NOT EXISTS monitoring_disksample_1h (server_id bigint NOT NULL, "
            "device varchar(64) NOT NULL, bucket timestamptz NOT NULL, sample_count bigint NOT NULL, "
            "read_bps_avg double precision, read_bps_max double precision, write_bps_avg double precision, "
            "write_bps_max double precision, util_percent_avg double precision, "
            "util_percent_max double precision, UNIQUE (server_id, bucket, device))"
        ),
        "90 days",
    ),
)
CREATE_HYPERTABLE = "SELECT create_hypertable(%s, 'bucket', chunk_time_interval => %s::interval, if_not_exists => true)"

# Compression of the raw hypertables, segmented by server (Timescale-licensed edition).
COMPRESSION = (
    (
        "ALTER TABLE monitoring_snapshot SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'server_id', timescaledb.compress_orderby = 'collected_at DESC')"
    ),
    (
        "ALTER TABLE monitoring_gpusample SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'server_id', timescaledb.compress_orderby = 'collected_at DESC, "
        "gpu_index')"
    ),
    (
        "ALTER TABLE monitoring_disksample SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'server_id', timescaledb.compress_orderby = 'collected_at DESC, "
        "device')"
    ),
)

# Dropped coarsest first: a 1h aggregate is built on its 1m one.
RELATIONS_TO_DROP = (
    "monitoring_snapshot_1h",
    "monitoring_gpusample_1h",
    "monitoring_disksample_1h",
    "monitoring_snapshot_1m",
    "monitoring_gpusample_1m",
    "monitoring_disksample_1m",
)


def edition(cursor) -> str:
    cursor.execute("SELECT current_setting('timescaledb.license', true)")
    return (cursor.fetchone()[0] or "apache").lower()


def resolve_backend(cursor) -> str:
    wanted = settings.MONITORING_TIER_BACKEND
    has_caggs = edition(cursor) == "timescale"
    if wanted == "continuous" and not has_caggs:
        raise RuntimeError(
            "MONITORING_TIER_BACKEND=continuous needs TimescaleDB's Timescale-licensed edition "
            "(SHOW timescaledb.license says 'apache'); use auto or rollup"
        )
    if wanted == "auto":
        return "continuous" if has_caggs else "rollup"
    return wanted


def install(cursor) -> None:
    if resolve_backend(cursor) == "continuous":
        for sql in CONTINUOUS:
            cursor.execute(sql)
    else:
        for relation, create, chunk in ROLLUP:
            cursor.execute(create)
            cursor.execute(CREATE_HYPERTABLE, [relation, chunk])
    if edition(cursor) == "timescale":
        for sql in COMPRESSION:
            cursor.execute(sql)


def uninstall(cursor) -> None:
    for relation in RELATIONS_TO_DROP:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates WHERE view_name = %s)",
            [relation],
        )
        kind = "MATERIALIZED VIEW" if cursor.fetchone()[0] else "TABLE"
        cursor.execute(f"DROP {kind} IF EXISTS {relation} CASCADE")
    cursor.execute("DELETE FROM monitoring_tierdirty")
