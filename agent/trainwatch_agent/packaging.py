"""How this copy of the agent was installed, as it says in its `agent` block.

The builds of `make agent-dist` (the zipapp, the .deb and the container image) write a module
`trainwatch_agent/_packaging.py` into what they ship, holding one of KINDS; a copy without it was
installed with pip (from a checkout or a copy of `agent/`).
"""

from __future__ import annotations

KINDS = ("deb", "zipapp", "container", "pip")


def packaging() -> str:
    try:
        from trainwatch_agent import _packaging  # type: ignore[attr-defined]
    except ImportError:
        return "pip"
    kind = getattr(_packaging, "PACKAGING", "pip")
    return kind if kind in KINDS else "pip"
