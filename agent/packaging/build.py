"""Builds the agent for nodes without a checkout: one zipapp file, and a .deb around it.

    python agent/packaging/build.py                 # dist/trainwatch-agent.pyz and dist/trainwatch-agent_<v>_all.deb
    python agent/packaging/build.py zipapp --packaging container --out /out/trainwatch-agent.pyz

The agent's dependencies come at the versions, and with the hashes, that agent/requirements-node.txt
pins (`make lock` resolves it for Python 3.9, the oldest the agent supports, so that one set runs on
every node): the pure-Python ones (requests and its own, nvidia-ml-py) unpacked into the archive, psutil as the
manylinux wheels for x86_64 and aarch64 (its compiled part cannot be imported from a zip; the
archive's __main__.py, bootstrap.py, unpacks the right one at first run unless the node has a
psutil of its own). Wheels are kept in build/agent-wheels and taken from there before the index.

Standard library only (pip is run as a command); dpkg-deb builds the .deb.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipapp
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent"
HERE = Path(__file__).resolve().parent
LOCK = AGENT / "requirements-node.txt"
WHEELS = ROOT / "build" / "agent-wheels"
UNIT = ROOT / "deploy" / "agent" / "trainwatch-agent.service"

# The one dependency with a compiled part; the lock's others are pure Python.
NATIVE = "psutil"
ARCHES = ("x86_64", "aarch64")
# The oldest Python the agent supports: wheels are picked for it (newer ones take them too).
PYTHON = "3.9"
# manylinux2014 (glibc 2.17) and older: every distribution a GPU node runs today has a newer glibc.
MANYLINUX = [f"manylinux_2_{minor}" for minor in range(17, 4, -1)] + ["manylinux2014", "manylinux2010", "manylinux1"]
# Zip entries and the .deb's files carry this time, so that two builds of one tree are the same
# bytes (1980 is zip's epoch).
FIXED_TIME = 315532800 + 86400
# Where the .deb puts things; the unit in deploy/ says the rest.
DEB_BIN = "/usr/bin/trainwatch-agent"
DEB_PYZ = "/usr/lib/trainwatch-agent/trainwatch-agent.pyz"
DEB_UNIT = "/lib/systemd/system/trainwatch-agent.service"
DEB_ENV = "/etc/trainwatch-agent/agent.env"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]

    def requirement(self) -> str:
        return f"{self.name}=={self.version} " + " ".join(f"--hash={h}" for h in self.hashes)


def agent_version() -> str:
    text = (AGENT / "trainwatch_agent" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def pins(lock: Path = LOCK) -> dict[str, Pin]:
    """Every `name==version` of the lock with its hashes, by lower-case name."""
    found: dict[str, Pin] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
        head = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", block)
        if head:
            hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", block))
            found[head.group(1).lower()] = Pin(head.group(1), head.group(2), hashes)
    return found


def _pip_download(pin: Pin, dest: Path, tags: list[str]) -> None:
    """One wheel into dest, hashes checked: from the cache alone if it is there, else from the index."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write(pin.requirement() + "\n")
        req.flush()
        base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--require-hashes"]
        base += ["--python-version", PYTHON, "-d", str(dest), "-r", req.name, *tags]
        cached = subprocess.run([*base, "--no-index", "--find-links", str(dest)], capture_output=True)
        if cached.returncode != 0:
            subprocess.run(base, check=True)


def _wheel(dest: Path, pin: Pin, suffix: str = ".whl") -> Path:
    prefix = pin.name.lower().replace("-", "_") + "-" + pin.version + "-"
    found = sorted(p for p in dest.iterdir() if p.name.lower().startswith(prefix) and p.name.endswith(suffix))
    if not found:
        raise SystemExit(f"no wheel of {pin.name} {pin.version} in {dest}")
    return found[-1]


def wheels(cache: Path = WHEELS) -> tuple[list[Path], list[Path]]:
    """The pure wheels, and psutil's wheel for each of ARCHES."""
    locked = pins()
    pure = []
    for name, pin in sorted(locked.items()):
        if name == NATIVE:
            continue
        _pip_download(pin, cache / "pure", ["--platform", "any", "--implementation", "py", "--abi", "none"])
        pure.append(_wheel(cache / "pure", pin, "-none-any.whl"))
    native = []
    for arch in ARCHES:
        pin = locked[NATIVE]
        tags = [arg for tag in MANYLINUX for arg in ("--platform", f"{tag}_{arch}")]
        _pip_download(pin, cache / arch, [*tags, "--implementation", "cp", "--abi", "abi3"])
        native.append(_wheel(cache / arch, pin, f"_{arch}.whl"))
    return pure, native


def _stage(staging: Path, packaging: str, pure: list[Path], native: list[Path]) -> None:
    for wheel in pure:
        with zipfile.ZipFile(wheel) as whl:
            # The packages, their licences and METADATA (nvidia-ml-py states its licence only there);
            # not the rest of the wheels' metadata.
            for name in whl.namelist():
                top = name.split("/")[0]
                keep = not top.endswith(".dist-info") or "/licenses/" in name or name.endswith(("/METADATA", "LICENSE"))
                if keep and not name.endswith("/"):
                    whl.extract(name, staging)
    shutil.copytree(
        AGENT / "trainwatch_agent",
        staging / "trainwatch_agent",
        ignore=shutil.ignore_patterns("__pycache__", "_packaging.py"),
    )
    (staging / "trainwatch_agent" / "_packaging.py").write_text(f'PACKAGING = "{packaging}"\n')
    (staging / "_psutil").mkdir()
    for wheel in native:
        shutil.copy(wheel, staging / "_psutil" / wheel.name)
    shutil.copy(HERE / "bootstrap.py", staging / "__main__.py")


def _zip(staging: Path, out: Path) -> None:
    """The staged tree as a zip, entries sorted and dated FIXED_TIME: the same tree, the same bytes."""
    when = time.gmtime(FIXED_TIME)[:6]
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), date_time=when)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)


def build_zipapp(out: Path, packaging: str = "zipapp", interpreter: str = "/usr/bin/env python3") -> Path:
    pure, native = wheels()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "app"
        staging.mkdir()
        _stage(staging, packaging, pure, native)
        _zip(staging, Path(tmp) / "app.zip")
        # zipapp prepends the interpreter line to the archive it is given.
        zipapp.create_archive(Path(tmp) / "app.zip", out, interpreter=interpreter)
    out.chmod(0o755)
    return out


# --- the .deb -------------------------------------------------------------------------------


def deb_unit() -> str:
    """deploy/'s unit, with the .deb's path to the command: the one place each other fact is said."""
    text = UNIT.read_text()
    text, count = re.subn(r"^ExecStart=\S+", f"ExecStart={DEB_BIN}", text, flags=re.M)
    if count != 1:
        raise SystemExit(f"{UNIT}: expected one ExecStart= line")
    return text


def _control(version: str, installed_kib: int) -> str:
    template = (HERE / "debian" / "control").read_text()
    return template.replace("@VERSION@", version).replace("@INSTALLED_SIZE@", str(installed_kib))


def _write(root: Path, path: str, data: bytes, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buffer.getvalue()


def _changelog(version: str) -> bytes:
    return (HERE / "debian" / "changelog").read_text().replace("@VERSION@", version).encode()


def build_deb(out_dir: Path) -> Path:
    version = agent_version()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        build_zipapp(root / DEB_PYZ.lstrip("/"), packaging="deb", interpreter="/usr/bin/python3")
        (root / "usr" / "bin").mkdir(parents=True)
        os.symlink("../lib/trainwatch-agent/trainwatch-agent.pyz", root / DEB_BIN.lstrip("/"))
        _write(root, DEB_UNIT, deb_unit().encode())
        _write(root, DEB_ENV, (HERE / "debian" / "agent.env").read_bytes())
        doc = "/usr/share/doc/trainwatch-agent"
        _write(root, f"{doc}/copyright", (HERE / "debian" / "copyright").read_bytes())
        _write(root, f"{doc}/changelog.gz", _gzip(_changelog(version)))
        _write(
            root,
            "/usr/share/man/man1/trainwatch-agent.1.gz",
            _gzip((HERE / "debian" / "trainwatch-agent.1").read_bytes()),
        )
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        _control_files(root, version)
        out = out_dir / f"trainwatch-agent_{version}_all.deb"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_TIME)}
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    return out


def _control_files(root: Path, version: str) -> None:
    files = sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink()))
    installed = sum(p.lstat().st_size for p in files) // 1024 + len(list(root.rglob("*")))
    sums = "".join(
        f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n"
        for p in files
        if p.is_file() and not p.is_symlink() and not str(p.relative_to(root)).startswith("etc/")
    )
    _write(root, "DEBIAN/control", _control(version, installed).encode())
    _write(root, "DEBIAN/md5sums", sums.encode())
    _write(root, "DEBIAN/conffiles", f"{DEB_ENV}\n".encode())
    for script in ("postinst", "prerm", "postrm"):
        _write(root, f"DEBIAN/{script}", (HERE / "debian" / script).read_bytes(), 0o755)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("all", "zipapp", "deb"), default="all")
    parser.add_argument("--packaging", default="zipapp", help="what the zipapp reports (zipapp, container)")
    parser.add_argument("--out", type=Path, help="the zipapp's path (default dist/trainwatch-agent.pyz)")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the .deb goes (default dist/)")
    args = parser.parse_args(argv)
    if args.what in ("all", "zipapp"):
        path = build_zipapp(args.out or args.dist / "trainwatch-agent.pyz", packaging=args.packaging)
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    if args.what in ("all", "deb"):
        path = build_deb(args.dist)
        print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
