"""What the node agent costs, side by side with Debian's prometheus-node-exporter.

Runs the real `trainwatch-agent` at its default interval (2 s) for --duration seconds,
posting to a local dummy HTTP sink (or to a real server with --url/--server/--token),
and, in the same window, a prometheus-node-exporter with its default collectors that
this script scrapes at the same interval. Both are measured from /proc: CPU time
(utime + stime of the whole process, all threads) per sample or scrape after a warm-up,
and RSS (now and peak, VmHWM). Prints a table.

    .venv/bin/python bench/agent.py                 # 3 minutes
    .venv/bin/python bench/agent.py --duration 30   # a quick look

The sink answers each POST with 200 and closes the connection, as gunicorn's sync
workers do, so the agent pays for a TCP connect per sample as it would in production.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import VENV_BIN, free_port, wait_for_port  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = "prometheus-node-exporter"


# --- /proc readings ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) in MiB, from /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# --- the dummy sink ------------------------------------------------------------------------


class Sink:
    """Counts the samples posted to it and answers like the ingest API (200, then close)."""

    def __init__(self) -> None:
        self.count = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.count += 1
                payload = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# --- node_exporter -------------------------------------------------------------------------


def ensure_node_exporter() -> str | None:
    binary = shutil.which(NODE_EXPORTER)
    if binary:
        return binary
    print(f"{NODE_EXPORTER} is missing: installing it with apt-get", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", NODE_EXPORTER]):
        if subprocess.run(sudo + command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"could not install {NODE_EXPORTER}; measuring the agent alone", file=sys.stderr)
            return None
    return shutil.which(NODE_EXPORTER)


class Scraper:
    """GETs /metrics every `interval` seconds, like a Prometheus server would."""

    def __init__(self, port: int, interval: float) -> None:
        self.port, self.interval = port, interval
        self.count = 0
        self.bytes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", "/metrics")
            self.bytes = len(conn.getresponse().read())
            conn.close()
            self.count += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))


# --- the run -------------------------------------------------------------------------------


@dataclass
class Measure:
    name: str
    pid: int
    count: Callable[[], int]
    cpu0: float = 0.0
    n0: int = 0
    startup_cpu: float = 0.0

    def begin(self) -> None:
        self.cpu0, self.n0 = cpu_seconds(self.pid), self.count()
        self.startup_cpu = self.cpu0

    def end(self) -> dict:
        cpu, n = cpu_seconds(self.pid), self.count()
        rss, peak = memory_mib(self.pid)
        done = max(1, n - self.n0)
        return {
            "events": n - self.n0,
            "cpu_ms": (cpu - self.cpu0) * 1000 / done,
            "cpu_total": cpu - self.cpu0,
            "rss": rss,
            "peak": peak,
            "startup_ms": self.startup_cpu * 1000,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="measured seconds (default 180)")
    parser.add_argument("--interval", type=float, default=2.0, help="sample/scrape interval (default 2, the agent's)")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring (default 6)")
    parser.add_argument("--url", help="post to this TrainWatch server instead of the dummy sink")
    parser.add_argument("--server", help="the server slug (with --url)")
    parser.add_argument("--token", help="its ingest token (with --url)")
    args = parser.parse_args()
    if args.url and not (args.server and args.token):
        parser.error("--url needs --server and --token")

    agent_bin = VENV_BIN / "trainwatch-agent"
    if not agent_bin.exists():
        print(f"{agent_bin} is missing: `.venv/bin/pip install -e ./agent`", file=sys.stderr)
        return 1
    exporter_bin = ensure_node_exporter()
    workdir = Path(tempfile.mkdtemp(prefix="trainwatch-bench-agent-"))
    procs: list[subprocess.Popen] = []
    sink = None
    try:
        if args.url:
            url, slug, token, target = args.url, args.server, args.token, f"the server at {args.url}"
        else:
            sink = Sink()
            url, slug, token, target = sink.url, "bench", "bench-token", "a local dummy HTTP sink"
        agent = subprocess.Popen(
            [str(agent_bin), "--url", url, "--server", slug, "--token", token, "--interval", str(args.interval)]
            + ["--spool-dir", str(workdir / "spool")],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "agent.log", "wb"),  # noqa: SIM115 - lives as long as the agent
        )
        procs.append(agent)
        spool = workdir / "spool"
        agent_count = (lambda: sink.count) if sink else None
        measures = []
        scraper = None
        if exporter_bin:
            port = free_port()
            exporter = subprocess.Popen(
                [exporter_bin, f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(exporter)
            wait_for_port(port)
            scraper = Scraper(port, args.interval)
            scraper.thread.start()

        if agent_count is None:
            # A real server: samples are taken on a steady schedule, so elapsed / interval counts them.
            started = time.monotonic()
            agent_count = lambda: int((time.monotonic() - started) / args.interval)  # noqa: E731
        time.sleep(args.warmup)
        measures.append(Measure("trainwatch-agent", agent.pid, agent_count))
        if scraper:
            measures.append(Measure("node_exporter", exporter.pid, lambda: scraper.count))
        for m in measures:
            m.begin()
        print(f"measuring for {args.duration:.0f} s at a {args.interval:g} s interval; the agent posts to {target}")
        time.sleep(args.duration)
        results = {m.name: m.end() for m in measures}
        if scraper:
            scraper.stop.set()
        if any(p.poll() is not None for p in procs):
            print("a measured process exited early; see " + str(workdir / "agent.log"), file=sys.stderr)
            return 1
        unsent = len(list(spool.glob("*.json")))
        print_table(results, args, scraper.bytes if scraper else 0, unsent)
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if sink:
            sink.close()
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(results: dict, args, scrape_bytes: int, unsent: int) -> None:
    names = list(results)
    rows = [
        ("samples / scrapes measured", "{events:d}"),
        ("CPU per sample / scrape (ms)", "{cpu_ms:.2f}"),
        ("CPU, share of one core (%)", None),
        ("RSS at the end (MiB)", "{rss:.1f}"),
        ("peak RSS, VmHWM (MiB)", "{peak:.1f}"),
        ("start-up CPU (ms)", "{startup_ms:.0f}"),
    ]
    width = 30
    print()
    print(f"{'':{width}}" + "".join(f"{n:>20}" for n in names))
    for label, fmt in rows:
        cells = []
        for n in names:
            r = results[n]
            if fmt is None:
                cells.append(f"{100 * r['cpu_total'] / args.duration:.3f}")
            else:
                cells.append(fmt.format(**r))
        print(f"{label:{width}}" + "".join(f"{c:>20}" for c in cells))
    print()
    agent = results["trainwatch-agent"]
    checks = [
        ("agent CPU per sample <= 5 ms", agent["cpu_ms"] <= 5.0),
        ("agent peak RSS <= 40 MiB", agent["peak"] <= 40.0),
    ]
    if "node_exporter" in results:
        checks.append(("agent CPU <= node_exporter CPU", agent["cpu_total"] <= results["node_exporter"]["cpu_total"]))
        print(f"(node_exporter's /metrics answer: {scrape_bytes / 1024:.0f} KiB per scrape)")
    if unsent:
        print(f"(the agent left {unsent} samples unsent in its spool)")
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    sys.exit(main())
