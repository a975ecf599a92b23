"""Alerts: rules and channels as code, episodes evaluated after classification (and by beat for
offline servers), notices delivered by webhook, Slack and email. The rest of the app imports this
module only; its modules are:

- models.py: the rows (rules, channels, episodes, deliveries, silences);
- rules.py: the YAML format, its checks, import and export, and what a condition holds;
- evaluation.py: episodes from labelled snapshots, offline servers and XID errors;
- delivery.py: notices, their retries and their signatures.
"""

from __future__ import annotations

from ..packages import public

# What the rest of the app uses, by the module that has it.
PUBLIC = {
    "models": ("AlertChannel", "AlertDelivery", "AlertEpisode", "AlertRule", "AlertSilence"),
    "rules": ("RulesError", "condition", "duration", "export_text", "import_text", "selector"),
    "evaluation": ("evaluate_labelled", "evaluate_offline", "prune"),
    "delivery": ("deliver", "due", "send", "sign"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
