"""The second part of the GPU tiers as migration 0005 made them, frozen.

Continuous aggregates take no new columns, so GPU metrics tiered after 0002 (PCIe traffic,
average power, energy) get relations of their own, `monitoring_gpusample_p2_{1m,1h}`, made by
whichever backend made the first part; the history joins the parts on (server, GPU, bucket).
Nothing is backfilled: the energy columns are new, and older buckets keep null PCIe figures. On
the full edition, beat's next refresh materializes the new aggregates from the raw rows still kept.
"""

CONTINUOUS = ('CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_gpusample_p2_1m WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, r.gpu_index, time_bucket(INTERVAL '1 minute', "
 'r.collected_at) AS bucket, count(*) AS sample_count, avg(r.pcie_rx_bytes_per_s) AS '
 'pcie_rx_bytes_per_s_avg, max(r.pcie_rx_bytes_per_s) AS pcie_rx_bytes_per_s_max, avg(r.pcie_tx_bytes_per_s) '
 'AS pcie_tx_bytes_per_s_avg, max(r.pcie_tx_bytes_per_s) AS pcie_tx_bytes_per_s_max, avg(r.energy_w) AS '
 'energy_w_avg, max(r.energy_w) AS energy_w_max, sum(r.energy_joules) AS energy_joules_sum FROM '
 "monitoring_gpusample r   GROUP BY r.server_id, r.gpu_index, time_bucket(INTERVAL '1 minute', "
 'r.collected_at) WITH NO DATA',
 'CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_gpusample_p2_1h WITH (timescaledb.continuous, '
 "timescaledb.materialized_only = true) AS SELECT r.server_id, r.gpu_index, time_bucket(INTERVAL '1 hour', "
 'r.bucket) AS bucket, sum(r.sample_count)::bigint AS sample_count, sum(r.pcie_rx_bytes_per_s_avg * '
 'r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.pcie_rx_bytes_per_s_avg IS NOT NULL), 0) AS '
 'pcie_rx_bytes_per_s_avg, max(r.pcie_rx_bytes_per_s_max) AS pcie_rx_bytes_per_s_max, '
 'sum(r.pcie_tx_bytes_per_s_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE '
 'r.pcie_tx_bytes_per_s_avg IS NOT NULL), 0) AS pcie_tx_bytes_per_s_avg, max(r.pcie_tx_bytes_per_s_max) AS '
 'pcie_tx_bytes_per_s_max, sum(r.energy_w_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE '
 'r.energy_w_avg IS NOT NULL), 0) AS energy_w_avg, max(r.energy_w_max) AS energy_w_max, '
 'sum(r.energy_joules_sum) AS energy_joules_sum FROM monitoring_gpusample_p2_1m r   GROUP BY r.server_id, '
 "r.gpu_index, time_bucket(INTERVAL '1 hour', r.bucket) WITH NO DATA")
ROLLUP = (('monitoring_gpusample_p2_1m',
  'CREATE TABLE IF NOT EXISTS monitoring_gpusample_p2_1m (server_id bigint NOT NULL, gpu_index smallint NOT '
  'NULL, bucket timestamptz NOT NULL, sample_count bigint NOT NULL, pcie_rx_bytes_per_s_avg double '
  'precision, pcie_rx_bytes_per_s_max double precision, pcie_tx_bytes_per_s_avg double precision, '
  'pcie_tx_bytes_per_s_max double precision, energy_w_avg double precision, energy_w_max double precision, '
  'energy_joules_sum double precision, UNIQUE (server_id, bucket, gpu_index))',
  '7 days'),
 ('monitoring_gpusample_p2_1h',
  'CREATE TABLE IF NOT EXISTS monitoring_gpusample_p2_1h (server_id bigint NOT NULL, gpu_index smallint NOT '
  'NULL, bucket timestamptz NOT NULL, sample_count bigint NOT NULL, pcie_rx_bytes_per_s_avg double '
  'precision, pcie_rx_bytes_per_s_max double precision, pcie_tx_bytes_per_s_avg double precision, '
  'pcie_tx_bytes_per_s_max double precision, energy_w_avg double precision, energy_w_max double precision, '
  'energy_joules_sum double precision, UNIQUE (server_id, bucket, gpu_index))',
  '90 days'))
CREATE_HYPERTABLE = "SELECT create_hypertable(%s, 'bucket', chunk_time_interval => %s::interval, if_not_exists => true)"


def _is_continuous(cursor) -> bool:
    """Whether the first part is made of continuous aggregates (what 0002 chose then)."""
    cursor.execute(
        "SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'monitoring_gpusample_1m')"
    )
    return cursor.fetchone()[0]


def install(cursor) -> None:
    if _is_continuous(cursor):
        for sql in CONTINUOUS:
            cursor.execute(sql)
    else:
        for relation, create, chunk in ROLLUP:
            cursor.execute(create)
            cursor.execute(CREATE_HYPERTABLE, [relation, chunk])


def uninstall(cursor) -> None:
    kind = "MATERIALIZED VIEW" if _is_continuous(cursor) else "TABLE"
    # Coarsest first: the 1h aggregate is built on the 1m one.
    for relation in ("monitoring_gpusample_p2_1h", "monitoring_gpusample_p2_1m"):
        cursor.execute(f"DROP {kind} IF EXISTS {relation} CASCADE")
