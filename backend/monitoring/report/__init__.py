"""Reading the stored data back: a server's history at any range, and the fleet report of
GPU-hours per bottleneck. Each reads the coarsest tier that answers, finer tiers or raw rows for
what the tiers do not hold yet. The rest of the app imports this module only; its modules are:

- history.py: /api/metrics/history/ (source and resolution chosen per range, XID events);
- fleet.py: /api/fleet/report/ (GPU-hours per bottleneck, lost ones unused or wasted, as JSON or CSV).
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "history": ("HistoryRequestError", "history_for", "xid_event"),
    "fleet": ("UNUSED", "USEFUL", "WASTED", "ReportRequestError", "as_csv", "fleet_report", "parse_window"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
