"""Debian's Chromium as the browser tests and bench/page.py launch it (Playwright downloads none)."""

CHROMIUM = "/usr/bin/chromium"
# No sandbox (root in a container), and none of Chromium's background calls to Google's hosts,
# which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
