"""Tiers: the 1-minute, 1-hour and 1-day summaries that long histories read, kept up to date,
compressed and pruned. The rest of the app imports this module only; its modules are:

- definitions.py: the tiers, their families of columns (from the catalogue) and their horizons;
- refresher.py: dirty marks and the refresh of both backends (rollup tables, continuous aggregates);
- retention.py: how long raw rows and each tier are kept, and the chunks that go;
- compression.py: old raw chunks compressed, on the full edition;
- dbjobs.py: TimescaleDB's own background jobs, and which of them fail.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "definitions": (
        "ALL_TIERS",
        "LABEL",
        "PARTS",
        "WIDTH",
        "edition",
        "families",
        "floor",
        "horizons",
        "installed_backend",
        "label_column",
        "label_read",
        "split",
    ),
    "refresher": ("mark_dirty_many", "refresh", "refresh_continuous", "refresh_rollups", "rollup_range"),
    "retention": (
        "RetentionError",
        "TIER_ORDER as RETENTION_TIERS",
        "apply as apply_retention",
        "check_policy as check_retention_policy",
        "chunks_to_drop",
        "report as retention_report",
        "set_policy as set_retention_policy",
    ),
    "compression": ("compress_old_chunks",),
    "dbjobs": ("failing as failing_jobs",),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
