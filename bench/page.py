"""The dashboard page in headless Chromium: time from navigation until every chart has drawn,
and the bytes it took, for the 1 h, 24 h and 30 d ranges of a server with 30 days of history.

    .venv/bin/python bench/page.py [--runs 5] [--ranges 1h 24h 30d] [--web-workers 3]

Seeds one server (2 s samples, 4 GPUs, 2 disks) into its own database (DATABASE_URL's name +
"_page"); a later run reuses it and only seeds the hours since it last ran. Each run opens the
page in a fresh browser context (empty cache, signed in), so static files count every time.
"Drawn" is the page's own performance mark, set once every chart has drawn its first history.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Processes, machine, setup_environment, table  # noqa: E402
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SLUG = "page-30d"
DAYS = 30
EMAIL = "bench@example.com"
PASSWORD = "bench page password"


def seed(env: dict) -> None:
    """30 days ending now: the whole of it the first time, afterwards only what is missing."""
    from django.utils import timezone

    from monitoring.models import MonitoredServer

    server = MonitoredServer.objects.filter(slug=SLUG).first()
    if server and server.latest_snapshot_at and server.snapshot_count >= DAYS * 43200 * 0.95:
        gap = timezone.now() - server.latest_snapshot_at
        if gap < timedelta(minutes=1):
            print(f"{SLUG}: {server.snapshot_count:,} samples already seeded", file=sys.stderr)
            return
        days = (gap - timedelta(seconds=2)).total_seconds() / 86400
        print(f"{SLUG}: seeding the last {gap} since the previous run", file=sys.stderr)
    else:
        if server:
            server.delete()
        days = DAYS
    subprocess.run(
        [sys.executable, str(ROOT / "backend" / "manage.py"), "seed_history", SLUG, "--days", f"{days:.6f}"]
        + ["--interval", "2", "--gpus", "4", "--disks", "2", "--seed", "0"],
        check=True,
        env=env,
    )
    subprocess.run(["psql", env["DATABASE_URL"], "-qc", "ANALYZE"], check=True)


def make_user() -> None:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-page", defaults={"email": EMAIL})
    user.set_password(PASSWORD)
    user.save()
    EmailAddress.objects.get_or_create(user=user, email=EMAIL, defaults={"verified": True, "primary": True})


def signed_in_state(browser, base: str) -> dict:
    context = browser.new_context(base_url=base)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("#id_login", EMAIL)
    page.fill("#id_password", PASSWORD)
    page.click("#password-login button[type=submit]")
    page.wait_for_url(base + "/**")
    state = context.storage_state()
    context.close()
    return state


def load_once(browser, base: str, state: dict, range_: str) -> dict:
    """One cold load: ms until drawn, bytes on the wire (headers included), requests, console errors."""
    context = browser.new_context(base_url=base, storage_state=state, viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    urls, sizes = {}, {}
    cdp.on("Network.responseReceived", lambda e: urls.__setitem__(e["requestId"], e["response"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"/?server={SLUG}&range={range_}")
    page.wait_for_function("() => window.trainwatch && window.trainwatch.drawnAt != null", timeout=30_000)
    drawn_ms = page.evaluate("performance.getEntriesByName('trainwatch:drawn')[0].startTime")
    history = page.evaluate("window.trainwatch.history")
    lengths = page.evaluate("window.trainwatch.lengths()")
    # Requests made before the mark: what the first drawing needed (later ones are refreshes).
    page.wait_for_timeout(100)
    history_bytes = sum(n for rid, n in sizes.items() if "/api/metrics/history/" in urls.get(rid, ""))
    context.close()
    return {
        "ms": drawn_ms,
        "bytes": sum(sizes.values()),
        "history_bytes": history_bytes,
        "requests": len(sizes),
        "points": history["points"],
        "source": history["source"],
        "resolution": history["resolution_seconds"],
        "charts": len(lengths),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold loads per range (default 5)")
    parser.add_argument("--ranges", nargs="+", default=["1h", "24h", "30d"], help="ranges to load")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers (default 3)")
    args = parser.parse_args()

    env = setup_environment("page")
    seed(env)
    make_user()
    env.update(MONITORING_PASSWORD_LOGIN="1", MONITORING_ALLOWED_EMAILS=EMAIL)

    from playwright.sync_api import sync_playwright

    procs = Processes()
    rows, problems = [], []
    try:
        base = procs.web(env, args.web_workers)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            state = signed_in_state(browser, base)
            for range_ in args.ranges:
                load_once(browser, base, state, range_)  # warms the database and the workers
                runs = [load_once(browser, base, state, range_) for _ in range(args.runs)]
                problems += [f"{range_}: {e}" for run in runs for e in run["errors"]]
                times = [r["ms"] for r in runs]
                last = runs[-1]
                rows.append(
                    [
                        range_,
                        f"{last['points']:,} ({last['source']}, {last['resolution']:g} s)",
                        last["charts"],
                        f"{statistics.median(times):,.0f}",
                        f"{min(times):,.0f} – {max(times):,.0f}",
                        last["requests"],
                        f"{statistics.median(r['bytes'] for r in runs) / 1024:,.0f} KiB",
                        f"{statistics.median(r['history_bytes'] for r in runs) / 1024:,.0f} KiB",
                    ]
                )
            browser.close()
    finally:
        procs.stop_all()

    print(f"\nDashboard page, cold loads, median of {args.runs}; {machine()}")
    print(f"{SLUG}: {DAYS} days of 2 s samples, 4 GPUs, 2 disks; gunicorn with {args.web_workers} workers\n")
    print(
        table(
            [
                "range",
                "points (source, per point)",
                "charts",
                "drawn ms",
                "min – max",
                "requests",
                "bytes",
                "of which history",
            ],
            rows,
        )
    )
    print("\ndrawn ms: from navigation start until every chart has drawn (the page's performance mark).")
    print("bytes: on the wire, headers included, as Chromium's network events count them.")
    if problems:
        print("\nConsole errors:\n" + "\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
