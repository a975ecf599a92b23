"""Classification: what holds each server back, from its snapshots. The rest of the app imports
this module only; its modules are:

- classifier.py: the pure classifier (readings in, a label, confidence and reason out; no Django);
- runner.py: the worker's side, which reads unclassified snapshots, labels them, and marks the
  tiers and the server's counters.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "classifier": ("RULES_VERSION",),
    "runner": ("classify_servers", "servers_with_stale_pending"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
