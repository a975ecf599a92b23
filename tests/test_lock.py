"""The dependency lock: the whole tree pinned with hashes, the venv holding exactly what it lists,
the files edited by hand satisfied by it, and the agent still a library with loose bounds."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

# `name==version ; marker \` opens each entry of a lock that uv writes; hashes follow.
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def lock(name: str) -> dict[str, tuple[str, str | None, list[str]]]:
    """name -> (version, marker, hashes)."""
    entries: dict[str, tuple[str, str | None, list[str]]] = {}
    current = None
    for line in (ROOT / name).read_text().splitlines():
        if match := ENTRY.match(line):
            current = canonicalize_name(match[1])
            entries[current] = (match[2], match[3], [])
        elif current and (found := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            entries[current][2].append(found[1])
    return entries


def applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate()


def installed() -> dict[str, str]:
    """What this venv holds, as `pip freeze` says, but pip itself (the venv's installer) and the
    project's own agent (installed editable from agent/)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {canonicalize_name(n): v for n, v in pins.items() if canonicalize_name(n) != "pip"}


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_package_of_the_lock_is_pinned_with_hashes(name):
    entries = lock(name)
    assert len(entries) > 20
    assert [n for n, (_, _, hashes) in entries.items() if not hashes] == []
    # Nothing in the file that is not an entry, a hash, a comment or a blank line.
    strays = [
        line
        for line in (ROOT / name).read_text().splitlines()
        if line.strip() and not (ENTRY.match(line) or line.lstrip().startswith(("--hash=", "#")))
    ]
    assert strays == []


def test_the_venv_holds_exactly_the_lock():
    wanted = {n: v for n, (v, marker, _) in lock("requirements-dev.txt").items() if applies(marker)}
    have = installed()
    assert {n: v for n, v in have.items() if wanted.get(n) != v} == {}, "installed but not as locked"
    assert {n: v for n, v in wanted.items() if have.get(n) != v} == {}, "locked but not installed"


def test_the_web_apps_lock_is_the_dev_locks_own_versions():
    runtime, dev = lock("requirements.txt"), lock("requirements-dev.txt")
    assert {n: v for n, (v, _, _) in runtime.items() if dev.get(n, (None,))[0] != v} == {}
    assert all(set(runtime[n][2]) <= set(dev[n][2]) for n in runtime)


@pytest.mark.parametrize(
    "source, locked", [("requirements.in", "requirements.txt"), ("requirements-dev.in", "requirements-dev.txt")]
)
def test_what_is_edited_by_hand_is_what_is_locked(source, locked):
    """An edit of a .in file without `make lock` fails here, not on somebody's machine later."""
    entries = lock(locked)
    agent = tomllib.loads((ROOT / "agent" / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = []
    for line in (ROOT / source).read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-r"):
            continue
        wanted += agent if text == "./agent" else [text]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{text} is not in {locked}: run make lock"
        assert requirement.specifier.contains(entries[name][0], prereleases=True), (
            f"{text}: {locked} has {entries[name][0]}"
        )


def test_the_agent_stays_a_library_with_lower_bounds():
    dependencies = tomllib.loads((ROOT / "agent" / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies and all(">=" in d and "==" not in d and "<" not in d for d in dependencies)


def test_the_agents_node_lock_pins_what_the_agent_needs_with_hashes():
    """agent/requirements-node.txt: what the zipapp, the .deb and the image bundle, resolved for
    Python 3.9 (`make lock`), so it may hold older versions than the dev lock, never other packages."""
    entries = lock("agent/requirements-node.txt")
    assert [n for n, (_, _, hashes) in entries.items() if not hashes] == []
    assert all(marker is None for _, marker, _ in entries.values())  # one set for every node
    dependencies = tomllib.loads((ROOT / "agent" / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in dependencies:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{text} is not in agent/requirements-node.txt: run make lock"
        assert requirement.specifier.contains(entries[name][0]), f"{text}: the node lock has {entries[name][0]}"
    assert set(entries) <= set(lock("requirements-dev.txt"))
