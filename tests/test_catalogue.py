"""The catalogue of metrics and the models agree: every metric has its column, of the type
the catalogue says, and every metric column of a sample table is in the catalogue."""

from __future__ import annotations

import pytest
from django.db import connection

from monitoring import catalogue
from monitoring.models import DiskSample, GpuSample, Snapshot
from monitoring.tiers import definitions as tiers

MODELS = {"host": Snapshot, "gpu": GpuSample, "disk": DiskSample}
# Columns of the sample tables that are not metrics: keys, times, the classifier's output.
NOT_METRICS = {
    "id",
    "server",
    "collected_at",
    "received_at",
    "gpu_index",
    "device",
}
POSTGRES_TYPES = {
    "float8": "double precision",
    "bigint": "bigint",
    "integer": "integer",
    "smallint": "smallint",
    "text": ("character varying", "text"),
    "jsonb": "jsonb",
    "boolean": "boolean",
}


@pytest.mark.parametrize("block", sorted(MODELS))
def test_every_metric_column_is_in_the_catalogue_and_back(block):
    columns = {f.name for f in MODELS[block]._meta.concrete_fields} - NOT_METRICS
    assert columns == set(catalogue.names(catalogue.columns(block)))


@pytest.mark.django_db
@pytest.mark.parametrize("block", sorted(MODELS))
def test_each_column_has_the_catalogues_type(block):
    table = MODELS[block]._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", [table])
        types = dict(cursor.fetchall())
    for metric in catalogue.columns(block):
        expected = POSTGRES_TYPES[metric.sql]
        assert types[metric.name] in (expected if isinstance(expected, tuple) else (expected,)), metric.name


def test_every_derived_metric_derives_from_what_exists():
    for metric in catalogue.METRICS:
        if not metric.derived:
            continue
        how, *source = metric.derived
        if how in ("rate", "busy", "delta"):
            assert catalogue.metric(metric.block, source[0]).kind == "counter", metric.name
        elif how in ("sum", "max"):
            assert catalogue.metric(source[0], source[1]), metric.name
        else:
            assert how == "count" and source[0] in catalogue.DEVICE_KEYS, metric.name


@pytest.mark.django_db
def test_events_are_kept_apart_from_the_sample_columns():
    events = [m for m in catalogue.METRICS if m.kind == "events"]
    assert events and not any(m.stored for m in events)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('monitoring_xiderror') IS NOT NULL")
        assert cursor.fetchone()[0]


def test_a_tiered_metric_has_one_part_and_aggregates_it_knows():
    for metric in catalogue.METRICS:
        assert metric.tier_part >= 1
        assert set(metric.tier) <= set(tiers.AGGREGATES), metric.name
        # Averages and maxima of gauges; of anything else, only sums.
        if metric.kind not in ("percent", "gauge", "rate"):
            assert set(metric.tier) <= {"sum", "label_sum"}, metric.name


def test_names_are_unique_within_a_block():
    keys = [(m.block, m.name) for m in catalogue.METRICS]
    assert len(keys) == len(set(keys))


def test_the_catalogue_is_pure_python():
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(catalogue.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "dataclasses"}


def test_what_an_agent_sends_and_what_ingest_derives_split_each_block():
    for block in MODELS:
        sent = catalogue.block(block, derived=False)
        derived = catalogue.block(block, derived=True)
        assert sent and set(sent) | set(derived) == set(catalogue.block(block))
        assert not set(sent) & set(derived)


def test_every_label_has_a_display_name_and_the_apis_title_stays_the_contracts():
    names = catalogue.DISPLAY_NAMES
    assert tuple(names) == catalogue.LABELS and all(names.values())
    assert names["gpu-bound"] == "GPU-bound" and names["io-bound"] == "I/O-bound"
    assert catalogue.title_for("gpu-bound") == "Gpu Bound" and catalogue.title_for("gpu-idle-held") == "Gpu Idle Held"
