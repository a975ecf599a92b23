"""trainwatch-agent as one file: the `__main__.py` of the zipapp that `make agent-dist` builds.

Everything the agent imports is pure Python and runs from inside the archive, except psutil's
compiled part. The node's own psutil is used when it is there and new enough (Debian's
python3-psutil, say); else the wheel bundled for this machine's architecture is unpacked once
into a cache directory of this user's, and imported from there.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import sys
import tempfile
import zipfile

# The oldest psutil the agent is tested with (agent/pyproject.toml).
MIN_PSUTIL = (5, 9)
WHEELS = "_psutil"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _node_psutil_fits() -> bool:
    """The node has a psutil of its own, and it is new enough (read from its metadata, not imported)."""
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        return False
    from importlib import metadata

    try:
        return _version_tuple(metadata.version("psutil")) >= MIN_PSUTIL
    except metadata.PackageNotFoundError:
        return True  # installed without metadata: take it as it is


def _archive() -> zipfile.ZipFile:
    return zipfile.ZipFile(os.path.dirname(os.path.abspath(__file__)))


def _bundled_wheel(archive: zipfile.ZipFile) -> str | None:
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    for name in archive.namelist():
        if name.startswith(WHEELS + "/") and name.endswith(f"_{machine}.whl"):
            return name
    return None


def _arch(wheel: str) -> str:
    """x86_64 of psutil-...-manylinux_2_28_x86_64.whl."""
    return wheel[: -len(".whl")].split("manylinux_")[-1].split("_", 2)[-1]


def _cache_root() -> str:
    """systemd's CacheDirectory= if the unit has one; root's /var/cache; else the user's XDG cache."""
    if os.environ.get("CACHE_DIRECTORY"):
        return os.environ["CACHE_DIRECTORY"].split(":")[0]
    if os.geteuid() == 0:
        return "/var/cache/trainwatch-agent"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "trainwatch-agent")


def _private(path: str) -> bool:
    """Only this user can change what is imported from here."""
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _unpacked(archive: zipfile.ZipFile, wheel: str) -> str:
    """The directory that holds the wheel's psutil, unpacked once (atomically) per version."""
    root = _cache_root()
    target = os.path.join(root, os.path.basename(wheel)[: -len(".whl")])
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        if os.path.isdir(target) and _private(root) and _private(target):
            return target
        if not _private(root):
            raise PermissionError(f"{root} is writable by others")
        scratch = tempfile.mkdtemp(prefix=".unpack-", dir=root)
    except OSError as exc:
        # A read-only or shared cache: unpack for this run only.
        print(f"trainwatch-agent: cannot use {root} ({exc}); unpacking psutil for this run only", file=sys.stderr)
        scratch = tempfile.mkdtemp(prefix="trainwatch-agent-")
        _extract(archive, wheel, scratch)
        return _for_this_run(scratch)
    _extract(archive, wheel, scratch)
    try:
        os.rename(scratch, target)
    except OSError:
        if not (os.path.isdir(target) and _private(target)):
            return _for_this_run(scratch)
        shutil.rmtree(scratch, ignore_errors=True)  # another agent unpacked it first
    return target


def _for_this_run(folder: str) -> str:
    import atexit

    atexit.register(shutil.rmtree, folder, True)
    return folder


def _extract(archive: zipfile.ZipFile, wheel: str, into: str) -> None:
    with archive.open(wheel) as raw, zipfile.ZipFile(raw) as inner:
        inner.extractall(into)


def _provide_psutil() -> None:
    if _node_psutil_fits():
        return
    with _archive() as archive:
        wheel = _bundled_wheel(archive)
        if wheel is None:
            names = ", ".join(_arch(n) for n in archive.namelist() if n.startswith(WHEELS + "/"))
            sys.exit(
                f"trainwatch-agent: error: no psutil for {platform.machine()} in this file (it has {names});"
                " install psutil 5.9 or newer for this Python (e.g. apt install python3-psutil)"
            )
        sys.path.insert(1, _unpacked(archive, wheel))


def main() -> None:
    if sys.version_info < (3, 9):  # noqa: UP036 (this file is what an older Python runs first)
        sys.exit(f"trainwatch-agent: error: needs Python 3.9 or newer, not {platform.python_version()}")
    _provide_psutil()
    from trainwatch_agent.cli import main as agent_main

    agent_main()


if __name__ == "__main__":
    main()
