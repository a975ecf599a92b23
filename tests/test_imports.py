"""No import cycles in the monitoring app, not even ones hidden inside functions."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from monitoring import queue, tasks

APP = Path(__file__).resolve().parent.parent / "backend" / "monitoring"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module under root by dotted name (a package by its own name)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The app's modules that one module imports, wherever in it the import statement is."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(here[: len(here) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module
            # `from package import module` imports the module; `from module import name`, the module.
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {target for target in found if target in modules and target != name}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), as a path."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_within(graph, group) for group in groups]


def _path_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    path, seen = [start], {start}
    while True:
        step = min(t for t in graph[path[-1]] if t in group and (t == start or t not in seen))
        path.append(step)
        if step == start:
            return path
        seen.add(step)


def test_the_monitoring_app_has_no_import_cycle():
    found = cycles(import_graph(APP, "monitoring"))
    assert not found, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in found)


# The app's domain packages: the rest of the app imports each through its public module (the
# package itself), never its inner modules; Django finds a package's models through monitoring.models.
PACKAGES = sorted(
    p.name for p in APP.iterdir() if (p / "__init__.py").exists() and p.name not in ("migrations", "management")
)


def test_packages_are_reached_through_their_public_module():
    graph = import_graph(APP, "monitoring")
    private = {}
    for name, targets in graph.items():
        for package in (f"monitoring.{p}" for p in PACKAGES):
            if name == package or name.startswith(package + "."):
                continue
            inner = [
                t
                for t in targets
                if t.startswith(package + ".") and (name, t) != ("monitoring.models", f"{package}.models")
            ]
            if inner:
                private[name] = inner
    assert PACKAGES and not private, private


def package_of(module: str, packages) -> str:
    """The node a module counts as in the packages' graph: its package (a package's models count
    as monitoring.models, which Django loads them through), or the module itself at the top."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in packages:
        return "monitoring.models" if parts[2] == "models" else ".".join(parts[:2])
    return module


def package_graph(graph: dict[str, set[str]], packages) -> dict[str, set[str]]:
    nodes: dict[str, set[str]] = {}
    for name, targets in graph.items():
        if name.startswith(("monitoring.migrations", "monitoring.management")):
            continue
        nodes.setdefault(package_of(name, packages), set()).update(package_of(t, packages) for t in targets)
    return {name: {t for t in targets if t != name and t in nodes} for name, targets in nodes.items()}


def test_no_cycle_between_the_packages():
    # Modules inside a package may import each other freely; packages (and the top's modules)
    # form layers: ingest never imports classify, tiers never imports report, and so on.
    found = cycles(package_graph(import_graph(APP, "monitoring"), PACKAGES))
    assert not found, "cycles between packages: " + "; ".join(" -> ".join(cycle) for cycle in found)


def test_the_package_graph_sees_a_cycle_through_inner_modules(tmp_path):
    app = tmp_path / "monitoring"
    for package in ("ingest", "tiers"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text("")
    (app / "__init__.py").write_text("")
    (app / "ingest" / "store.py").write_text("from .. import tiers\n")
    (app / "ingest" / "counters.py").write_text("")
    (app / "tiers" / "retention.py").write_text("def later():\n    from ..ingest import counters\n")
    (app / "tiers" / "models.py").write_text("from .. import ingest\n")
    graph = package_graph(import_graph(app, "monitoring"), ("ingest", "tiers"))
    assert graph["monitoring.tiers"] == {"monitoring.ingest"}
    assert graph["monitoring.ingest"] == {"monitoring.tiers"}
    assert cycles(graph) == [["monitoring.ingest", "monitoring.tiers", "monitoring.ingest"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_package_is_there(package):
    module = importlib.import_module(f"monitoring.{package}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert module.__all__ and not missing, missing
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_migrations_import_no_live_code_of_the_app():
    # A migration builds the schema as it was when written: what it needs is frozen beside it.
    graph = import_graph(APP, "monitoring")
    live = {
        name: sorted(t for t in targets if not t.startswith("monitoring.migrations"))
        for name, targets in graph.items()
        if name.startswith("monitoring.migrations.")
    }
    assert not {name: targets for name, targets in live.items() if targets}


def test_the_graph_sees_imports_inside_functions_relative_and_absolute(tmp_path):
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "sub" / "__init__.py").write_text("")
    (app / "a.py").write_text("from .sub import b\n")
    (app / "sub" / "b.py").write_text("def later():\n    from app import c\n")
    (app / "c.py").write_text("def later():\n    from .a import thing\n")
    (app / "d.py").write_text("import app.a\n")
    graph = import_graph(app, "app")
    assert graph["app.a"] == {"app.sub.b"}
    assert graph["app.sub.b"] == {"app.c"}
    assert graph["app.c"] == {"app.a"}
    assert graph["app.d"] == {"app.a"}
    assert cycles(graph) == [["app.a", "app.sub.b", "app.c", "app.a"]]


def test_the_queue_names_the_classification_task_that_exists():
    # The queue sends the task by name so as not to import tasks, which imports the queue.
    assert tasks.classify_waiting.name == queue.CLASSIFY_TASK


def test_the_task_names_stay_what_queued_messages_name():
    # A message queued before an upgrade names its task; a rename would leave it unrunnable.
    from trainwatch.celery import app

    names = {name for name in app.tasks if name.startswith("monitoring.")}
    assert names == {
        "monitoring.tasks.apply_retention",
        "monitoring.tasks.classify_server",
        "monitoring.tasks.classify_waiting",
        "monitoring.tasks.compress_chunks",
        "monitoring.tasks.deliver_alert",
        "monitoring.tasks.deliver_due_alerts",
        "monitoring.tasks.evaluate_offline_alerts",
        "monitoring.tasks.refresh_tiers",
        "monitoring.tasks.sweep_unclassified",
    }


def test_the_architecture_map_lists_each_package_with_what_it_imports():
    # docs/architecture.md: one row per package, `| `name/` | job | imports (besides Django) |`.
    doc = (APP.parent.parent / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)/` \| .* \| ([\w, ()]+) \|$", doc, re.M)
    documented = {name: set(re.sub(r"\(.*?\)", "", imports).replace(" ", "").split(",")) for name, imports in rows}
    graph = package_graph(import_graph(APP, "monitoring"), PACKAGES)
    actual = {p: {t.removeprefix("monitoring.") for t in graph[f"monitoring.{p}"]} - {"packages"} for p in PACKAGES}
    assert documented == actual
