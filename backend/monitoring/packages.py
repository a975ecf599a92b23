"""How a domain package shows its public surface: `__init__.py` lists, by inner module, the names
the rest of the app may use, and each is loaded on first use.

Loading late keeps a package's `__init__` free of imports, so Django can import a package's
models through monitoring.models while the package's other modules import monitoring.models in
turn. No public name may be the name of an inner module: once that module is imported, Python
sets it on the package and it would hide the name. A name is looked up on its module at every use (not copied), so a test that patches the
module patches every caller.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def public(package: str, names: dict[str, tuple[str, ...]]) -> tuple[list[str], Callable, Callable]:
    """(`__all__`, `__getattr__`, `__dir__`) for the package `package` that exposes `names`: per
    inner module, its names, each as it is called there or as `"inner as public"` where the
    inner name would be unclear beside the package's others (`retention.apply` as
    `apply_retention`)."""
    home = {}
    for module, exported in names.items():
        for entry in exported:
            inner, _, outer = entry.partition(" as ")
            home[outer or inner] = (module, inner)
    clash = set(home) & set(names)
    assert not clash, f"{package}: {sorted(clash)} would be hidden by the modules of the same name"
    everything = sorted(home)

    def __getattr__(name: str):
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, inner = home[name]
        return getattr(import_module(f"{package}.{module}"), inner)

    def __dir__() -> list[str]:
        return everything

    return everything, __getattr__, __dir__
