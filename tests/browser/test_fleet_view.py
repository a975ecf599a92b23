"""The fleet report in a real browser (?view=fleet): its totals, its bars per day and its table are
the API's numbers; the table sorts; a row opens its server over the same window; the view's URL,
the CSV link and Back and Forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests import samples
from tests.browser.conftest import wait_drawn

USEFUL = ("gpu-bound", "balanced")


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def seed(slug: str, *, gpus: int, seed: int) -> None:
    samples.seed_history(slug, 2, gpus=gpus, seed=seed)


@pytest.fixture
def gpu_fleet(tier_db):
    """Two days of history every 10 s: train-a (2 GPUs) and train-b (4 GPUs)."""
    seed("train-a", gpus=2, seed=1)
    seed("train-b", gpus=4, seed=2)


def report_requests(page) -> list[dict]:
    return [r["params"] for r in page.evaluate("window.trainwatch.requests") if r["path"] == "/api/fleet/report/"]


def api_report(page, params: dict) -> dict:
    """The report as the page's session reads it."""
    return page.evaluate(
        "(params) => fetch('/api/fleet/report/?' + new URLSearchParams(params)).then(r => r.json())", params
    )


def wait_report(page) -> None:
    page.wait_for_function("() => window.trainwatch && window.trainwatch.report")
    expect(page.locator("#fleet-table tbody tr[data-slug]").first).to_be_visible()


def table_slugs(page) -> list[str]:
    return page.eval_on_selector_all("#fleet-table tbody tr[data-slug]", "rows => rows.map(r => r.dataset.slug)")


def column(page, key: str) -> list[float]:
    """The numbers of a column, top to bottom."""
    index = page.eval_on_selector_all("#fleet-table thead th", "ths => ths.map(th => th.dataset.key)").index(key)
    return page.eval_on_selector_all(
        "#fleet-table tbody tr[data-slug]", "(rows, i) => rows.map(r => parseFloat(r.cells[i].dataset.value))", index
    )


def total(page, key: str) -> float:
    return float(page.locator(f"#fleet-total-{key}").get_attribute("data-value"))


def utc_dates(start: str, end: str) -> list[str]:
    """Every UTC date from `start` up to, not including, `end`."""
    day = datetime.fromisoformat(start).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    stop = datetime.fromisoformat(end)
    dates = []
    while day < stop:
        dates.append(day.date().isoformat())
        day += timedelta(days=1)
    return dates


def test_the_fleet_report_shows_the_apis_totals_days_and_servers(alice_page, gpu_fleet):
    page = alice_page
    page.goto("/?view=fleet&range=7d")
    wait_report(page)
    assert query(page) == {"view": "fleet", "range": "7d"}
    assert report_requests(page) == [{"days": "7"}]
    expect(page.locator("#view-fleet")).to_have_attribute("aria-current", "page")
    expect(page.locator("#view-server")).to_have_attribute("aria-current", "false")
    # The server's parts are hidden; the range buttons serve the report.
    expect(page.locator("#charts")).to_be_hidden()
    expect(page.locator("#selected")).to_be_hidden()
    expect(page.locator('#ranges button[data-range="7d"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#data-note")).to_contain_text("1-hour tier")
    body = api_report(page, {"days": "7"})
    fleet = body["fleet"]
    assert fleet["servers"] == 2 and fleet["gpu_hours"] > 0

    # The totals are the API's.
    for key in ("gpu_hours", "utilization_percent", "energy_kwh", "servers"):
        assert total(page, key) == fleet[key], key
    lost = sum(v for label, v in fleet["by_bottleneck"].items() if label not in USEFUL)
    assert total(page, "lost_gpu_hours") == pytest.approx(lost, abs=0.002)
    # Of those, the unused (nothing ran) and the wasted (a job held the GPUs and waited) apart.
    assert total(page, "unused_gpu_hours") == fleet["unused_gpu_hours"] > 0
    assert total(page, "wasted_gpu_hours") == fleet["wasted_gpu_hours"] > 0
    share = round(100 * fleet["wasted_gpu_hours"] / fleet["gpu_hours"])
    wasted = page.locator("#fleet-total-wasted_gpu_hours")
    expect(wasted.locator(".note")).to_have_text(f"{share}% of GPU time: a job held the GPUs but waited")
    expect(wasted).to_have_attribute(
        "title", "GPU-hours labelled CPU-bound, I/O-bound, Memory-bound, GPU throttled, GPU idle, memory held"
    )
    unused = page.locator("#fleet-total-unused_gpu_hours")
    expect(unused.locator(".note")).to_contain_text("of GPU time: nothing ran on the GPUs")
    expect(unused).to_have_attribute("title", "GPU-hours labelled Idle")
    assert lost == pytest.approx(sum(s["lost_gpu_hours"] for s in body["servers"]), abs=0.01)
    expect(page.locator("#fleet-total-servers .big")).to_have_text("2")
    expect(page.locator("#fleet-total-utilization_percent .big")).to_have_text(f"{fleet['utilization_percent']:.1f}%")

    # A bar per UTC day of the window; those with samples hold the API's hours, label by label.
    days = page.eval_on_selector_all(
        "#fleet-bars .day",
        """days => days.map(d => ({
            date: d.dataset.date, hours: parseFloat(d.dataset.gpuHours),
            segs: Object.fromEntries([...d.querySelectorAll('.seg')].map(s => [s.dataset.label, parseFloat(s.dataset.hours)])),
        }))""",
    )
    assert [d["date"] for d in days] == utc_dates(body["from"], body["to"])
    by_date = {d["date"]: d for d in days}
    assert len(body["days"]) >= 2
    for day in body["days"]:
        shown = by_date[day["date"]]
        assert shown["hours"] == pytest.approx(day["gpu_hours"])
        assert shown["segs"] == {label: pytest.approx(v) for label, v in day["by_bottleneck"].items() if v > 0}
    empty = [d for d in days if d["date"] not in {day["date"] for day in body["days"]}]
    assert empty and all(d["hours"] == 0 and not d["segs"] for d in empty)
    # Segments take the labels' colours; unclassified its own grey. The legend names every label.
    colors = page.evaluate(
        "() => Object.fromEntries([...TW.labels.LABEL_NAMES, 'unclassified'].map(l => [l, TW.labels.labelColor(l)]))"
    )
    assert len(set(colors.values())) == len(colors)
    seg = page.locator("#fleet-bars .seg").first
    label = seg.get_attribute("data-label")
    assert seg.evaluate("el => el.style.background") == page.evaluate(
        "(c) => { const el = document.createElement('i'); el.style.background = c; return el.style.background; }",
        colors[label],
    )
    legend = page.eval_on_selector_all("#fleet-legend .legend-item", "items => items.map(i => i.dataset.label)")
    assert legend == list(colors)

    # A row per server, in the API's order (hours lost, largest first), with its figures.
    assert table_slugs(page) == [s["slug"] for s in body["servers"]]
    for key in ("gpu_hours", "lost_gpu_hours", "unused_gpu_hours", "wasted_gpu_hours", "cpu-bound", "unclassified"):
        assert column(page, key) == [s[key] if key in s else s["by_bottleneck"][key] for s in body["servers"]]

    # Sorting: by name A to Z, then Z to A; by utilization, largest first; in the URL, no step for Back.
    names = sorted(s["slug"] for s in body["servers"])
    page.click('#fleet-table th[data-key="server"] button')
    assert table_slugs(page) == names
    assert query(page)["sort"] == "server"
    expect(page.locator('#fleet-table th[data-key="server"]')).to_have_attribute("aria-sort", "ascending")
    page.click('#fleet-table th[data-key="server"] button')
    assert table_slugs(page) == names[::-1]
    assert query(page)["sort"] == "-server"
    page.click('#fleet-table th[data-key="utilization_percent"] button')
    by_util = sorted(body["servers"], key=lambda s: -s["utilization_percent"])
    assert table_slugs(page) == [s["slug"] for s in by_util]
    assert query(page) == {"view": "fleet", "range": "7d", "sort": "-utilization_percent"}
    page.click('#fleet-table th[data-key="utilization_percent"] button')
    assert table_slugs(page) == [s["slug"] for s in by_util][::-1]
    # The sort survives a reload.
    page.reload()
    wait_report(page)
    assert table_slugs(page) == [s["slug"] for s in by_util][::-1]
    expect(page.locator('#fleet-table th[data-key="utilization_percent"]')).to_have_attribute("aria-sort", "ascending")

    # The CSV link asks for the same window.
    csv = page.locator("#fleet-csv")
    expect(csv).to_have_attribute("href", "/api/fleet/report/?days=7&format=csv")
    head, *rows = page.evaluate("(url) => fetch(url).then(r => r.text())", csv.get_attribute("href")).splitlines()
    assert head.startswith("slug,name,") and sorted(r.split(",")[0] for r in rows) == names

    # A click on a row opens that server over the same range; Back returns to the report.
    target = table_slugs(page)[0]
    page.locator(f'#fleet-table tr[data-slug="{target}"] td.num').nth(2).click()
    wait_drawn(page)
    assert query(page) == {"server": target, "range": "7d"}
    expect(page.locator("#server-name")).to_have_text(target)
    expect(page.locator("#fleet-report")).to_be_hidden()
    expect(page.locator('#fleet a[aria-current="true"]')).to_have_attribute("data-slug", target)
    expect(page.locator("#view-server")).to_have_attribute("aria-current", "page")
    page.go_back()
    page.wait_for_function("() => new URLSearchParams(location.search).get('view') === 'fleet'")
    wait_report(page)
    assert query(page)["sort"] == "utilization_percent"
    expect(page.locator("#fleet-report")).to_be_visible()
    expect(page.locator("#charts canvas")).to_have_count(0)
    page.go_forward()
    wait_drawn(page, 2)
    assert query(page) == {"server": target, "range": "7d"}


def test_the_fleet_tab_keeps_the_range_and_a_window_from_to(alice_page, gpu_fleet):
    page = alice_page
    page.goto("/?server=train-b&range=24h")
    wait_drawn(page)
    expect(page.locator("#view-server")).to_have_attribute("aria-current", "page")
    expect(page.locator("#view-fleet")).to_have_attribute("href", "?view=fleet&range=24h")
    page.click("#view-fleet")
    wait_report(page)
    assert query(page) == {"view": "fleet", "range": "24h"}
    assert report_requests(page) == [{"days": "1"}]
    expect(page.locator("#data-note")).to_contain_text("1-minute tier")
    expect(page.locator("#fleet-window")).to_contain_text("Last 24 hours")
    # Another range asks again, a step Back can undo.
    page.click('#ranges button[data-range="30d"]')
    page.wait_for_function("() => window.trainwatch.requests.filter(r => r.path === '/api/fleet/report/').length === 2")
    assert report_requests(page)[-1] == {"days": "30"}
    assert query(page) == {"view": "fleet", "range": "30d"}
    expect(page.locator("#fleet-csv")).to_have_attribute("href", "/api/fleet/report/?days=30&format=csv")
    # The Server tab returns to the last server shown, over the report's range.
    expect(page.locator("#view-server")).to_have_attribute("href", "?server=train-b&range=30d")
    page.click("#view-server")
    wait_drawn(page, 2)
    assert query(page) == {"server": "train-b", "range": "30d"}

    # A window from – to: the report covers it, its CSV too, and a row keeps it.
    end = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    start = end - timedelta(hours=20)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    window = {"from": start.strftime(stamp), "to": end.strftime(stamp)}
    page.goto(f"/?view=fleet&range=7d&from={window['from']}&to={window['to']}")
    wait_report(page)
    assert report_requests(page) == [window]
    expect(page.locator("#zoom")).to_be_visible()
    body = api_report(page, window)
    assert total(page, "gpu_hours") == body["fleet"]["gpu_hours"]
    # 20 hours of two servers' 6 GPUs.
    assert body["fleet"]["gpu_hours"] == pytest.approx(120, rel=0.02)
    csv = page.locator("#fleet-csv").get_attribute("href")
    assert csv.startswith("/api/fleet/report/?") and parse_qs(urlsplit(csv).query) == {
        "from": [window["from"]],
        "to": [window["to"]],
        "format": ["csv"],
    }
    page.click('#fleet-table tr[data-slug="train-a"] td.server a')
    wait_drawn(page)
    assert query(page) == {"server": "train-a", "range": "7d", **window}
    expect(page.locator("#zoom")).to_be_visible()
    # Reset zoom on the report drops the window and reads the range again.
    page.go_back()
    wait_report(page)
    page.click("#reset-zoom")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('from')")
    assert query(page) == {"view": "fleet", "range": "7d"}
    page.wait_for_function(
        "() => window.trainwatch.requests.filter(r => r.path === '/api/fleet/report/').at(-1).params.days === '7'"
    )
