"""The README's configuration table names every variable the settings read, with its default."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

READERS = {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_choice", "database_from_url", "broker_url"}


def settings_variables() -> dict[str, object]:
    """Variable name -> its literal default where the settings give one (else None)."""
    tree = ast.parse((ROOT / "backend" / "trainwatch" / "settings.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in READERS and node.args:
            name = node.args[0].value
            default = None
            if len(node.args) > 1:
                try:
                    default = ast.literal_eval(node.args[1])
                except ValueError:
                    default = None
            found[name] = default
    return found


def readme_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", (ROOT / "README.md").read_text(), re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_variable_is_in_the_readme():
    missing = set(settings_variables()) - set(readme_table())
    assert not missing, f"not in README.md's configuration table: {sorted(missing)}"


def test_the_readme_states_the_defaults():
    table = readme_table()
    for name, default in settings_variables().items():
        if isinstance(default, bool):
            assert table[name] == f"`{int(default)}`", name
        elif isinstance(default, int):
            assert table[name].startswith(f"`{default}`"), name
        elif isinstance(default, str) and default:
            assert table[name] == f"`{default}`", name
