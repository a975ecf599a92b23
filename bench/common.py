"""Shared plumbing for the benchmarks: a database of their own, the app's processes, a table."""

from __future__ import annotations

import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgres://trainwatch:trainwatch@127.0.0.1:5432/trainwatch"


def bench_database_url(suffix: str = "bench") -> str:
    """The configured DATABASE_URL with its database renamed, so benchmarks never touch real data.
    A benchmark started by another one renames the original URL, not the other one's."""
    url = urlsplit(os.environ.get("BENCH_BASE_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    return urlunsplit(url._replace(path=f"{url.path.rstrip('/')}_{suffix}"))


def bench_broker_url(db: int = 14) -> str:
    url = urlsplit(os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit(url._replace(path=f"/{db}"))


def setup_environment(suffix: str = "bench") -> dict:
    """Point this process (and its children) at the benchmark database and broker, migrated."""
    env = dict(os.environ)
    env.setdefault("BENCH_BASE_DATABASE_URL", os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    env.update(
        DATABASE_URL=bench_database_url(suffix),
        CELERY_BROKER_URL=bench_broker_url(),
        MONITORING_REDIS_PREFIX="trainwatch-bench",
        DJANGO_SETTINGS_MODULE="trainwatch.settings",
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(env)
    # BENCH_SKIP_SERVICES=1 for a database this project does not manage (e.g. a second server
    # with TimescaleDB's full edition): it must exist and have the extension available.
    if not os.environ.get("BENCH_SKIP_SERVICES"):
        subprocess.run([str(ROOT / "scripts" / "services.sh")], check=True, env=env, stdout=subprocess.DEVNULL)
    else:
        url = env["DATABASE_URL"]
        admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
        name = urlsplit(url).path.lstrip("/")
        exists = subprocess.run(
            ["psql", admin, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    subprocess.run(
        [sys.executable, str(ROOT / "backend" / "manage.py"), "migrate", "--no-input", "-v0"], check=True, env=env
    )
    sys.path.insert(0, str(ROOT / "backend"))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


class Processes:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict, log: str) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, cwd=ROOT / "backend", env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def web(self, env: dict, workers: int, port: int | None = None) -> str:
        port = port or free_port()
        self.start(
            [
                str(VENV_BIN / "gunicorn"),
                "trainwatch.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--backlog",
                "2048",
            ],
            env,
            f"/tmp/trainwatch-bench-web-{port}.log",
        )
        wait_for_port(port)
        return f"http://127.0.0.1:{port}"

    def worker(self, env: dict, concurrency: int = 1) -> None:
        self.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "trainwatch",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
            ],
            env,
            "/tmp/trainwatch-bench-worker.log",
        )

    def beat(self, env: dict) -> None:
        self.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "trainwatch",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                "/tmp/trainwatch-bench-beat-schedule",
            ],
            env,
            "/tmp/trainwatch-bench-beat.log",
        )

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
    return "\n".join(lines)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile of values (q a whole number from 1 to 99): the one rule behind every
    benchmark's p50, p95 and p99.

    statistics.quantiles(n=100, method="inclusive"): linear interpolation between the two nearest
    ranks, the values taken as the whole population. Why this one: it stays within the values (the
    "exclusive" method extrapolates past the slowest of a few requests, e.g. p99 of 20), p50 is
    statistics.median, and it is PostgreSQL's percentile_cont, by which the benchmarks compute the
    classification lag's percentiles in SQL (and numpy's default).
    """
    if not 1 <= q <= 99:
        raise ValueError(f"percentile {q}: must be a whole number from 1 to 99")
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def cpu_seconds_by_program() -> dict[str, float]:
    """CPU seconds used so far by every process on the machine, summed by program name."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime: a process's own time and that of its reaped children.
        used = sum(int(v) for v in fields[11:15]) / tick
        program = "postgres" if name.startswith("postgres") else name.split(":")[0].split()[0]
        totals[program] = totals.get(program, 0.0) + used
    return totals


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, idle and iowait left out): what
    per-process figures miss when processes end between two readings."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_used_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: after.get(name, 0.0) - before.get(name, 0.0)
        for name in after
        if after.get(name, 0.0) - before.get(name, 0.0) > 0.05
    }


def session_cookie() -> dict:
    """A signed-in superuser's session cookie, for timing the dashboard APIs over HTTP."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"email": "bench@localhost", "is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value}
