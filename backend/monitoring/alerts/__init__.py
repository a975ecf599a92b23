"""Alerts: rules and channels as code, episodes evaluated after classification (and by beat for
offline servers), notices delivered by webhook, Slack and email. The rest of the app imports this
module only; its modules are:

- models.py: the rows (rules, channels, episodes, deliveries, silences);
- rules.py: the YAML format, its checks, import and export, and what a condition holds;
- evaluation.py: episodes from labelled snapshots, offline servers and XID errors;
- delivery.py: notices, their retries and their signatures.
"""

from __future__ import annotations

from importlib import import_module

# What the rest of the app uses, by the module that has it. Loaded on first use: Django imports
# models.py through monitoring.models, and evaluation.py imports monitoring.models in turn.
PUBLIC = {
    "models": ("AlertChannel", "AlertDelivery", "AlertEpisode", "AlertRule", "AlertSilence"),
    "rules": ("RulesError", "condition", "duration", "export_text", "import_text", "selector"),
    "evaluation": ("evaluate_labelled", "evaluate_offline", "prune"),
    "delivery": ("deliver", "due", "send", "sign"),
}
_HOME = {name: module for module, names in PUBLIC.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
