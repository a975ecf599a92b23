"""No import cycles in the monitoring app, not even ones hidden inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

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
