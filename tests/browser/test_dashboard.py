"""The dashboard page in a real browser: sign-in, the fleet, the selected server, its charts,
time ranges and zoom in the URL, live refresh, alerts and the empty states."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from monitoring.alerts import AlertEpisode, AlertRule
from monitoring.catalogue import DISPLAY_NAMES, XID_MEANINGS
from monitoring.models import MonitoredServer
from monitoring.tasks import classify_server
from tests import samples
from tests.browser.conftest import chart_lengths, fleet_states, history_requests, sign_in, wait_drawn
from tests.conftest import IngestClient, make_user, register

GPU_CHARTS = {"gpu-util", "gpu-memory", "gpu-temperature", "gpu-power", "gpu-pcie"}
HOST_CHARTS = {"bottleneck", "cpu", "memory", "disk-io", "disk-util", "network"}
# A time of day as the alert lists show it, with its date when it is not today's.
CLOCK = r"(?:[A-Z][a-z]{2} \d{1,2} )?\d\d:\d\d"


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def x_scales(page) -> list[tuple[float, float]]:
    scales = page.evaluate("Object.values(window.trainwatch.charts).map(u => [u.scales.x.min, u.scales.x.max])")
    return [tuple(s) for s in scales]


def api_points(page, server: str, minutes: int) -> list[dict]:
    """The history as the page's session reads it."""
    return page.evaluate(
        "([s, m]) => fetch(`/api/metrics/history/?server=${s}&minutes=${m}`).then(r => r.json()).then(b => b.points)",
        [server, minutes],
    )


def api_point_count(page, server: str, minutes: int) -> int:
    return len(api_points(page, server, minutes))


# --- who gets in --------------------------------------------------------------------------------


def test_an_anonymous_visit_goes_to_the_sign_in_page(page):
    page.goto("/")
    assert urlsplit(page.url).path == "/accounts/login/"
    assert query(page) == {"next": "/"}
    expect(page.locator("#google-sign-in")).to_be_visible()
    expect(page.locator("#password-login")).to_be_visible()


def test_bob_signs_in_but_is_not_allowlisted_and_sees_the_403_page(page, transactional_db):
    make_user("bob@elsewhere.example")
    sign_in(page, "bob@elsewhere.example")
    response = page.goto("/")
    assert response.status == 403
    expect(page.locator("#not-allowed")).to_contain_text("bob@elsewhere.example")
    expect(page.locator("#dashboard")).to_have_count(0)
    # Chromium reports the refused page itself as a failed load; nothing else may be logged.
    page.console.errors = [e for e in page.console.errors if "status of 403" not in e]


def test_alice_signs_in_sees_who_she_is_and_signs_out(alice_page, fleet):
    page = alice_page
    assert urlsplit(page.url).path == "/"
    expect(page.locator("#user-email")).to_have_text("alice@example.com")
    page.click("#sign-out button")
    page.wait_for_url("**/accounts/login/")
    page.goto("/")
    assert urlsplit(page.url).path == "/accounts/login/"


# --- what a signed-in user sees ---------------------------------------------------------------------


def test_the_fleet_lists_every_server_with_its_state_bottleneck_and_last_seen(alice_page, fleet):
    page = alice_page
    page.goto("/")
    wait_drawn(page)
    assert fleet_states(page) == {
        "gpu-box-01": "live",
        "cpu-node-07": "live",
        "old-box": "offline",
        "spare-box": "offline",
    }
    gpu_row = page.locator('#fleet li[data-slug="gpu-box-01"]')
    label = fleet["gpu"].bottleneck_label
    expect(gpu_row.locator(f'.chip[data-label="{label}"]')).to_have_text(DISPLAY_NAMES[label])
    expect(gpu_row.locator(".gpu")).to_have_text(f"{fleet['gpu'].latest_gpu_top_util_percent:.0f}%")
    expect(page.locator('#fleet li[data-slug="cpu-node-07"] .gpu')).to_be_empty()
    expect(gpu_row.locator(".seen")).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    expect(page.locator('#fleet li[data-slug="spare-box"] .seen')).to_have_text("never seen")
    expect(page.locator('#fleet li[data-slug="old-box"] .seen')).to_have_text("3 h ago")
    expect(page.locator("#fleet-summary")).to_have_text("4 servers · 2 live · 2 offline")
    # In the order people read names; the first live server is shown when the URL names none.
    assert page.eval_on_selector_all("#fleet li[data-slug]", "items => items.map(li => li.dataset.slug)") == [
        "cpu-node-07",
        "gpu-box-01",
        "old-box",
        "spare-box",
    ]
    assert query(page) == {"server": "cpu-node-07", "range": "1h"}
    expect(page.locator('#fleet a[aria-current="true"]')).to_have_attribute("data-slug", query(page)["server"])


def test_the_fleet_shows_each_agents_version_and_packaging_and_marks_the_old_ones(alice_page, fleet):
    MonitoredServer.objects.filter(slug="gpu-box-01").update(last_agent_version="0.10.0", agent_packaging="deb")
    # Strings from nodes: shown as text, never as markup.
    MonitoredServer.objects.filter(slug="cpu-node-07").update(last_agent_version="0.9.1", agent_packaging="<b>pip</b>")
    page = alice_page
    page.goto("/")
    wait_drawn(page)
    newest = page.locator('#fleet li[data-slug="gpu-box-01"] .agent-version')
    older = page.locator('#fleet li[data-slug="cpu-node-07"] .agent-version')
    expect(newest).to_have_text("0.10.0 · deb")
    expect(newest).to_have_attribute("data-old", "false")
    expect(older).to_have_text("0.9.1 · <b>pip</b>")
    expect(older).to_have_attribute("data-old", "true")
    expect(older).to_have_attribute(
        "title", "Agent 0.9.1, installed as <b>pip</b>; older than 0.10.0, the newest in the fleet"
    )
    expect(older.locator("b")).to_have_count(0)
    expect(page.locator('#fleet li[data-slug="spare-box"] .agent-version')).to_be_empty()


def test_the_selected_server_shows_its_bottleneck_figures_and_every_chart(alice_page, fleet):
    page = alice_page
    page.goto("/?server=gpu-box-01")
    wait_drawn(page)
    server = MonitoredServer.objects.get(slug="gpu-box-01")
    banner = page.locator("#bottleneck")
    expect(banner).to_have_attribute("data-label", server.bottleneck_label)
    expect(banner.locator(".label-title")).to_have_text(DISPLAY_NAMES[server.bottleneck_label])
    expect(banner.locator(".reason")).not_to_be_empty()
    expect(banner.locator(".confidence")).to_have_text(re.compile(r"^\d+%$"))
    for tile in ("cpu", "memory", "disk", "network", "gpu"):
        expect(page.locator(f"#tile-{tile} .big")).to_have_text(re.compile(r"\d"))
    expect(page.locator("#tile-memory")).to_contain_text("GiB")
    expect(page.locator("table.gpus tbody tr")).to_have_count(2)
    expect(page.locator("table.gpus tbody tr").first).to_contain_text("/ 400 W")
    expect(page.locator("table.gpus tbody tr td.pcie").first).to_have_text(re.compile(r"^\d[\d.]* [kMG]?B/s / \d"))

    lengths = chart_lengths(page)
    assert set(lengths) == HOST_CHARTS | GPU_CHARTS
    expected = api_point_count(page, "gpu-box-01", 60)
    assert expected > 300
    assert all(abs(n - expected) <= 2 for n in lengths.values()), lengths
    assert page.locator("#charts canvas").count() == len(lengths)
    counts = page.evaluate("window.trainwatch.seriesCounts()")
    assert counts["gpu-util"] == counts["gpu-temperature"] == counts["gpu-pcie"] == 2
    assert counts["disk-util"] == 2
    # Series labels and single-metric chart titles are the catalogue's, as the page's config carries it.
    metrics = page.evaluate("window.TW.config.metrics")
    labels = page.evaluate("window.trainwatch.charts.cpu.series.slice(1).map(s => s.label)")
    assert labels == [metrics["host"]["cpu_usage_percent"]["title"], metrics["host"]["cpu_iowait_percent"]["title"]]
    network = page.evaluate("window.trainwatch.charts.network.series.slice(1).map(s => s.label)")
    assert network == [metrics["host"]["network_rx_bps"]["title"], metrics["host"]["network_tx_bps"]["title"]]
    for chart, metric in (
        ("gpu-util", "utilization_gpu_percent"),
        ("gpu-temperature", "temperature_c"),
        ("gpu-power", "energy_w"),  # the seeded history knows each point's energy: average power
        ("gpu-pcie", "pcie_rx_bytes_per_s"),
    ):
        expect(page.locator(f"#chart-{chart} h3 .title")).to_have_text(metrics["gpu"][metric]["title"])
    # The power chart names what the GPUs used over the window: the sum of its points' energy.
    energy = page.locator("#chart-gpu-power h3 .energy")
    expect(energy).to_have_text(re.compile(r"^\d+(\.\d+)? k?Wh in this window$"))
    joules = sum(g["energy_joules"] or 0 for p in api_points(page, "gpu-box-01", 60) for g in p["gpus"])
    assert float(energy.get_attribute("data-joules")) == pytest.approx(joules, rel=0.02)
    # The timeline's key names the labels of the window with their share of it.
    expect(page.locator("#chart-bottleneck .band-key .chip").first).to_have_text(re.compile(r"\d+%$"))


def test_an_offline_server_says_so_and_offers_a_range_that_has_its_samples(alice_page, fleet):
    page = alice_page
    page.goto("/?server=old-box&range=1h")
    wait_drawn(page)
    expect(page.locator("#server-notice")).to_have_attribute("data-state", "offline")
    expect(page.locator("#server-state")).to_contain_text("offline")
    assert chart_lengths(page)["cpu"] == 0
    note = page.locator("#no-data-in-range")
    expect(note).to_contain_text("No samples in the last hour")
    note.locator("button").click()
    wait_drawn(page, 2)
    assert query(page)["range"] == "6h"
    assert chart_lengths(page)["cpu"] == 1
    expect(page.locator("#no-data-in-range")).to_have_count(0)


# --- navigation: servers, ranges, zoom, URL ------------------------------------------------------------


def test_switching_server_and_range_redraws_the_charts_and_updates_the_url(alice_page, fleet):
    page = alice_page
    page.goto("/?server=gpu-box-01&range=1h")
    wait_drawn(page)
    assert set(chart_lengths(page)) >= GPU_CHARTS

    page.click('#fleet a[data-slug="cpu-node-07"]')
    wait_drawn(page, 2)
    assert query(page) == {"server": "cpu-node-07", "range": "1h"}
    assert set(chart_lengths(page)) == HOST_CHARTS  # no GPU, no GPU charts
    expect(page.locator("#server-name")).to_have_text("cpu-node-07")
    expect(page.locator("#tile-gpu")).to_contain_text("no GPU")

    for range_, minutes, note in (("15m", 15, "raw samples"), ("6h", 360, "1-minute tier")):
        drawn = page.evaluate("window.trainwatch.drawCount")
        page.click(f'#ranges button[data-range="{range_}"]')
        wait_drawn(page, drawn + 1)
        assert query(page) == {"server": "cpu-node-07", "range": range_}
        expect(page.locator(f'#ranges button[data-range="{range_}"]')).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#data-note")).to_contain_text(note)
        # One history request per change, for that server and window.
        assert [r for r in history_requests(page) if r == {"server": "cpu-node-07", "minutes": str(minutes)}] == [
            {"server": "cpu-node-07", "minutes": str(minutes)}
        ]
        expected = api_point_count(page, "cpu-node-07", minutes)
        assert abs(chart_lengths(page)["cpu"] - expected) <= 2

    assert 80 <= chart_lengths(page)["cpu"] <= 190  # 3 hours of 1-minute points
    drawn = page.evaluate("window.trainwatch.drawCount")
    page.go_back()
    page.wait_for_function("() => new URLSearchParams(location.search).get('range') === '15m'")
    wait_drawn(page, drawn + 1)
    assert abs(chart_lengths(page)["cpu"] - 90) <= 2  # 15 minutes of 10 s samples


def test_a_shared_url_opens_the_same_server_range_and_zoom(alice_page, fleet):
    page = alice_page
    end = timezone.now().replace(microsecond=0) - timedelta(minutes=30)
    start = end - timedelta(hours=1)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    page.goto(f"/?server=cpu-node-07&range=6h&from={start.strftime(stamp)}&to={end.strftime(stamp)}")
    wait_drawn(page)
    expect(page.locator('#fleet a[aria-current="true"]')).to_have_attribute("data-slug", "cpu-node-07")
    expect(page.locator('#ranges button[data-range="6h"]')).to_have_attribute("aria-pressed", "true")
    assert history_requests(page)[0] == {"server": "cpu-node-07", "minutes": "360"}
    assert set(x_scales(page)) == {(start.timestamp(), end.timestamp())}
    expect(page.locator("#zoom")).to_be_visible()

    page.click("#reset-zoom")
    expect(page.locator("#zoom")).to_be_hidden()
    assert "from" not in query(page) and "to" not in query(page)
    for low, high in x_scales(page):
        assert high - low == pytest.approx(6 * 3600, abs=5)
        assert high == pytest.approx(time.time(), abs=30)


def test_dragging_zooms_every_chart_and_the_cursor_is_shared(alice_page, fleet):
    page = alice_page
    page.goto("/?server=gpu-box-01&range=1h")
    wait_drawn(page)
    page.locator("#chart-cpu").scroll_into_view_if_needed()
    plot = page.locator("#chart-cpu .u-over").bounding_box()
    y = plot["y"] + plot["height"] / 2
    page.mouse.move(plot["x"] + plot["width"] * 0.6, y)
    # The cursor is shared: hovering the CPU chart puts every chart's cursor on the same sample.
    cursors = page.evaluate("Object.values(window.trainwatch.charts).map(u => u.cursor.idx)")
    assert len(set(cursors)) == 1 and cursors[0] is not None
    page.mouse.move(plot["x"] + plot["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(plot["x"] + plot["width"] * 0.5, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => new URLSearchParams(location.search).has('from')")
    scales = set(x_scales(page))
    assert len(scales) == 1
    low, high = scales.pop()
    assert high - low == pytest.approx(0.2 * 3600, rel=0.1)
    q = query(page)
    assert q["server"] == "gpu-box-01" and q["range"] == "1h"
    expect(page.locator("#zoom")).to_be_visible()

    page.mouse.dblclick(plot["x"] + plot["width"] * 0.5, y)
    page.wait_for_function("() => !new URLSearchParams(location.search).has('from')")
    for low, high in x_scales(page):
        assert high - low == pytest.approx(3600, abs=5)


# --- live updates and empty states ---------------------------------------------------------------------


def feed(node, count: int, *, first_step: int = 0, end=None, edit=None) -> None:
    """`count` samples 2 s apart, the last at `end` (now by default), as an agent sends them;
    the CPU reads one point more at each step, so that every sample differs. `edit(step, sample)`,
    if given, may change a sample before it is sent."""
    end = end or timezone.now()
    ingest = IngestClient()
    for i in range(count):
        at = end - timedelta(seconds=2 * (count - 1 - i))
        step = first_step + i
        sample = samples.sample(at, gpus=2, disks=1, step=step, cpu_usage_percent=float(10 + step % 50))
        if edit:
            edit(step, sample)
        response = ingest.send(node, {"sample": sample})
        assert response.status_code == 200, response.content


# 15 minutes are raw samples as they are; an hour groups them by two, so the page must too.
@pytest.mark.parametrize("range_", ["15m", "1h"])
def test_new_samples_reach_the_charts_without_rebuilding_them_or_losing_the_zoom(alice_page, tier_db, range_):
    page = alice_page
    node = register("live-box", "Live Box")
    start = timezone.now()
    feed(node, 30, end=start)
    page.goto(f"/?server=live-box&range={range_}")
    wait_drawn(page)
    page.evaluate("for (const u of Object.values(window.trainwatch.charts)) u.__first = true")
    page.locator("#chart-cpu").scroll_into_view_if_needed()
    plot = page.locator("#chart-cpu .u-over").bounding_box()
    page.mouse.move(plot["x"] + plot["width"] * 0.2, plot["y"] + 20)
    page.mouse.down()
    page.mouse.move(plot["x"] + plot["width"] * 0.9, plot["y"] + 20, steps=4)
    page.mouse.up()
    page.wait_for_function("() => new URLSearchParams(location.search).has('from')")
    zoom = set(x_scales(page))
    page.mouse.move(0, 0)

    newest = start + timedelta(seconds=6)
    feed(node, 3, first_step=30, end=newest)
    page.wait_for_function(
        "t => Math.max(...window.trainwatch.charts.cpu.data[0]) + window.trainwatch.history.resolution_seconds > t",
        arg=newest.timestamp(),
        timeout=15_000,
    )
    assert page.evaluate("Object.values(window.trainwatch.charts).every(u => u.__first)"), "charts were rebuilt"
    assert set(x_scales(page)) == zoom, "the zoom was lost"
    # The refresh asked for the newest minutes only, yet the page holds what a full read returns.
    minutes = {"15m": "15", "1h": "60"}[range_]
    assert [r["minutes"] for r in history_requests(page)][0] == minutes
    assert all(int(r["minutes"]) <= 2 for r in history_requests(page)[1:])
    shown, full = page.evaluate(
        """async (minutes) => {
            const pick = (p) => [Date.parse(p.collected_at) / 1000, p.cpu_usage_percent, p.gpus[1].memory_percent,
                                 p.disks[0].read_bps];
            const body = await fetch(`/api/metrics/history/?server=live-box&minutes=${minutes}`).then(r => r.json());
            return [window.trainwatch.state.history.points.slice(-6).map(pick), body.points.slice(-6).map(pick)];
        }""",
        minutes,
    )
    assert shown == [pytest.approx(point) for point in full]

    # Classification labels samples a moment after they are stored; the next refreshes fetch them.
    classify_server(node.server.id)
    page.wait_for_function(
        "() => window.trainwatch.state.history.points.slice(-3).every(p => p.bottleneck)", timeout=15_000
    )
    labels = page.evaluate("window.trainwatch.state.history.points.slice(-3).map(p => p.bottleneck)")
    assert labels == [p["bottleneck"] for p in api_points(page, "live-box", int(minutes))[-3:]]


def test_empty_states_from_no_server_to_a_first_sample(alice_page, transactional_db):
    page = alice_page
    page.goto("/")
    expect(page.locator("#no-servers")).to_be_visible()
    expect(page.locator("#fleet")).to_contain_text("No servers registered yet.")
    expect(page.locator("#toolbar")).to_be_hidden()

    node = register("new-box", "New Box")
    expect(page.locator("#waiting")).to_contain_text("Waiting for the first sample from New Box", timeout=12_000)
    assert query(page)["server"] == "new-box"
    expect(page.locator('#fleet li[data-slug="new-box"] .seen')).to_have_text("never seen")

    feed(node, 2)
    wait_drawn(page)
    expect(page.locator("#waiting")).to_have_count(0)
    assert chart_lengths(page)["cpu"] >= 1
    expect(page.locator("#tile-cpu .big")).to_have_text("11%")
    expect(page.locator('#fleet li[data-slug="new-box"]')).to_have_attribute("data-state", "live")


def test_an_unknown_server_in_the_url_says_so_and_keeps_the_fleet(alice_page, fleet):
    page = alice_page
    page.goto("/?server=no-such-box")
    expect(page.locator("#unknown-server")).to_contain_text("no-such-box")
    expect(page.locator("#fleet li[data-slug]")).to_have_count(4)
    page.click('#fleet a[data-slug="gpu-box-01"]')
    wait_drawn(page)
    assert query(page)["server"] == "gpu-box-01"
    expect(page.locator("#unknown-server")).to_have_count(0)


def test_the_gpu_table_shows_pcie_traffic_mig_and_the_video_engines(alice_page, tier_db):
    node = register("mig-box", "MIG Box")
    sample = samples.sample(timezone.now(), gpus=2, disks=1)
    sample["gpus"][1].update(mig_mode=True, mig_instances=3, encoder_util_percent=40.0)
    job = {"kind": "slurm", "id": "1234", "name": "llama-70b", "user": "alice"}
    hostile = {"kind": "container", "id": "ab" * 32, "name": "<img src=x onerror=alert(1)>", "user": "<b>eve</b>"}
    sample["gpus"][0]["processes"] = [
        {"pid": 10, "name": "python", "user": "alice", "used_memory_bytes": 2**30, "workload": job},
        {"pid": 11, "name": "python", "user": "root", "used_memory_bytes": 2**30, "workload": hostile},
    ]
    sample["gpus"][1]["processes"] = [{"pid": 12, "name": "python", "user": "bob", "used_memory_bytes": 2**30}]
    assert IngestClient().send(node, {"sample": sample}).status_code == 200
    page = alice_page
    page.goto("/?server=mig-box")
    rows = page.locator("table.gpus tbody tr")
    expect(rows).to_have_count(2)
    # samples.gpu: 6.5 GB/s to the GPU, 1.2 GB/s back, the video decoder at 3 %.
    expect(rows.nth(0).locator("td.pcie")).to_have_text("6.5 GB/s / 1.2 GB/s")
    expect(rows.nth(0)).to_contain_text("video decoder 3%")
    expect(rows.nth(0)).not_to_contain_text("MIG")
    expect(rows.nth(1)).to_contain_text("MIG: 3 instances")
    expect(rows.nth(1)).to_contain_text("video encoder 40%")
    # Whose job each process is, as text: a hostile name stays a name.
    workloads = rows.nth(0).locator("td.procs .workload")
    expect(workloads).to_have_text(
        ["Slurm job 1234 llama-70b · alice", "container <img src=x onerror=alert(1)> · <b>eve</b>"]
    )
    expect(workloads.nth(1)).to_have_attribute("title", re.compile("^container " + "ab" * 32))
    expect(rows.nth(0).locator("td.procs img, td.procs b")).to_have_count(0)
    expect(rows.nth(1).locator("td.procs .workload")).to_have_count(0)


def xid_on(step: int, gpu: int, xid: int):
    """An `edit` for feed: the sample of `step` reports `xid` on GPU `gpu`, a second before it."""

    def edit(at_step: int, sample: dict) -> None:
        if at_step == step:
            at = datetime.fromisoformat(sample["collected_at"]) - timedelta(seconds=1)
            sample["gpus"][gpu]["xid_errors"] = [{"xid": xid, "at": at.isoformat()}]

    return edit


def test_xid_errors_are_marked_on_the_gpu_charts_and_in_the_gpu_table(alice_page, tier_db):
    node = register("xid-box", "XID Box")
    start = timezone.now()
    # 2 minutes of samples; GPU 1 fell off the bus early in them (before what a refresh reads again).
    feed(node, 60, end=start, edit=xid_on(5, 1, 79))
    page = alice_page
    page.goto("/?server=xid-box&range=15m")
    wait_drawn(page)

    rows = page.locator("table.gpus tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".chip.xid")).to_have_count(0)
    badge = rows.nth(1).locator(".chip.xid")
    expect(badge).to_have_text("XID 79")
    expect(badge).to_have_attribute("data-count", "1")
    fell_off = f"XID 79 on GPU 1: {XID_MEANINGS[79]}"
    expect(badge).to_have_attribute("title", re.compile(re.escape(fell_off)))
    # Average power from the energy counter (600 J every 2 s), titled as the catalogue titles it.
    average = page.evaluate("window.TW.config.metrics.gpu.energy_w.title")
    expect(rows.nth(0).locator(".avg-power")).to_have_text(f"{average} 300 W")

    # Every GPU chart marks the error at its time; the host charts do not.
    assert set(chart_lengths(page)) == HOST_CHARTS | GPU_CHARTS
    for chart in GPU_CHARTS:
        mark = page.locator(f"#chart-{chart} .xid-mark")
        expect(mark).to_have_count(1)
        expect(mark).to_have_attribute("data-xids", "79")
        expect(mark).to_have_attribute("data-gpus", "1")
        expect(mark).to_have_attribute("title", re.compile(re.escape(fell_off)))
    expect(page.locator("#chart-cpu .xid-mark")).to_have_count(0)
    # The line stands where the error happened on the time axis.
    at = page.evaluate("window.trainwatch.state.history.xids[0].at")
    left, expected = page.evaluate(
        """(at) => {
            const u = window.trainwatch.charts["gpu-util"];
            const mark = document.querySelector("#chart-gpu-util .xid-mark");
            return [parseFloat(mark.style.left), u.valToPos(Date.parse(at) / 1000, "x")];
        }""",
        at,
    )
    assert left == pytest.approx(expected, abs=0.5)

    # The power chart plots average power (300 W) rather than NVML's reading (311 W), with the
    # window's energy: 59 intervals of 600 J on each of 2 GPUs, 70.8 kJ.
    assert page.evaluate("window.trainwatch.charts['gpu-power'].data[1].at(-1)") == pytest.approx(300)
    energy = page.locator("#chart-gpu-power h3 .energy")
    expect(energy).to_have_text("19.7 Wh in this window")
    assert float(energy.get_attribute("data-joules")) == pytest.approx(59 * 2 * 600)
    # The PCIe chart: host to device, per GPU (samples.gpu: 6.5 GB/s).
    assert page.evaluate("window.trainwatch.charts['gpu-pcie'].data[2].at(-1)") == pytest.approx(6.5e9)

    # A refresh reads only the newest minute: it adds a new error and keeps the earlier one.
    newest = start + timedelta(seconds=4)
    feed(node, 2, first_step=60, end=newest, edit=xid_on(61, 0, 13))
    page.wait_for_function("() => document.querySelectorAll('#chart-gpu-util .xid-mark').length === 2", timeout=15_000)
    assert all(int(r["minutes"]) <= 2 for r in history_requests(page)[1:])
    marks = page.locator("#chart-gpu-util .xid-mark")
    expect(marks.nth(0)).to_have_attribute("data-xids", "79")
    expect(marks.nth(1)).to_have_attribute("data-xids", "13")
    expect(marks.nth(1)).to_have_attribute("title", re.compile(re.escape(f"XID 13 on GPU 0: {XID_MEANINGS[13]}")))
    expect(rows.nth(0).locator(".chip.xid")).to_have_text("XID 13")
    expect(rows.nth(1).locator(".chip.xid")).to_have_text("XID 79")


# --- alerts ---------------------------------------------------------------------------------------------


def episode(rule: str, server: MonitoredServer, state: str, start, **fields) -> AlertEpisode:
    """An alert episode of `rule` (made on first use) on `server`, as the worker would have stored it."""
    stored, _ = AlertRule.objects.get_or_create(
        name=rule, defaults={"when": {"metric": "temperature_c", "op": ">", "value": 85}}
    )
    return AlertEpisode.objects.create(rule=stored, server=server, state=state, started_at=start, **fields)


def bands(page, chart: str) -> list[dict]:
    """The alert bands of a chart, in the order drawn, with their data attributes."""
    return page.eval_on_selector_all(
        f"#chart-{chart} .alert-band", "els => els.map(el => Object.assign({title: el.title}, el.dataset))"
    )


def test_alerts_mark_the_fleet_list_the_server_and_band_its_charts(alice_page, fleet):
    now = timezone.now()
    minutes = lambda n: now - timedelta(minutes=n)  # noqa: E731
    hot = episode(
        "hot GPU",
        fleet["gpu"],
        "firing",
        minutes(20),
        fired_at=minutes(18),
        value=91.5,
        reason="GPU 1 at 91.5 °C",
    )
    slow = episode("slow disk", fleet["gpu"], "pending", minutes(2), value=99.0)
    idle = episode(
        "idle GPUs",
        fleet["gpu"],
        "resolved",
        minutes(50),
        fired_at=minutes(48),
        ended_at=minutes(40),
        label="gpu-idle-held",
        reason="GPU memory held at 0% utilization",
    )
    earlier = episode("hot GPU", fleet["gpu"], "resolved", minutes(300), fired_at=minutes(299), ended_at=minutes(240))
    muted = episode("memory full", fleet["cpu"], "firing", minutes(30), fired_at=minutes(29), silenced=True)
    # Another server's and a week-old episode are no business of gpu-box-01's view.
    episode("idle GPUs", fleet["old"], "resolved", minutes(9 * 24 * 60), ended_at=minutes(8 * 24 * 60))

    page = alice_page
    page.goto("/?server=gpu-box-01&range=1h")
    wait_drawn(page)

    # The fleet: a red badge on the server with a firing alert, a grey one where it is silenced.
    badge = page.locator('#fleet li[data-slug="gpu-box-01"] .alert-badge')
    expect(badge).to_have_text("1")
    expect(badge).to_have_attribute("data-silenced", "false")
    expect(badge).to_have_attribute("title", "1 alert firing:\nhot GPU")
    grey = page.locator('#fleet li[data-slug="cpu-node-07"] .alert-badge')
    expect(grey).to_have_text("1")
    expect(grey).to_have_class("alert-badge silenced")
    expect(grey).to_have_attribute("title", "1 alert firing:\nmemory full (silenced)")
    for slug in ("old-box", "spare-box"):
        expect(page.locator(f'#fleet li[data-slug="{slug}"] .alert-badge')).to_be_hidden()
    # One request serves the whole fleet.
    asked = [r["params"] for r in page.evaluate("window.trainwatch.requests") if r["path"] == "/api/alerts/"]
    assert asked and all(params == {} for params in asked)

    # The server's list: firing and pending first, then the resolved ones, newest first.
    panel = page.locator("#alerts-panel")
    expect(panel.locator("h2 small")).to_have_text("1 firing · 1 pending · 2 resolved in the last 7 days")
    open_ = page.locator("#alerts-open li")
    expect(open_).to_have_count(2)
    assert [open_.nth(i).get_attribute("data-episode") for i in range(2)] == [str(hot.pk), str(slow.pk)]
    expect(open_.nth(0).locator(".alert-status")).to_have_text("firing")
    expect(open_.nth(0).locator(".rule")).to_have_text("hot GPU")
    expect(open_.nth(0).locator(".when")).to_have_text(re.compile(rf"^since {CLOCK} \(18 min\)$"))
    expect(open_.nth(0).locator(".value")).to_have_text("91.5")
    expect(open_.nth(0).locator(".reason")).to_have_text("GPU 1 at 91.5 °C")
    expect(open_.nth(1).locator(".alert-status")).to_have_text("pending")
    expect(open_.nth(1).locator(".when")).to_have_text(re.compile(rf"^since {CLOCK} \(2 min\)$"))
    recent = page.locator("#alerts-recent li")
    expect(recent).to_have_count(2)
    assert [recent.nth(i).get_attribute("data-episode") for i in range(2)] == [str(idle.pk), str(earlier.pk)]
    expect(recent.nth(0)).to_have_attribute("data-status", "resolved")
    expect(recent.nth(0).locator(".when")).to_have_text(re.compile(rf"^{CLOCK} – {CLOCK} \(10 min\)$"))
    expect(recent.nth(0).locator('.chip[data-label="gpu-idle-held"]')).to_have_text("GPU idle, memory held")
    expect(recent.nth(1).locator(".when")).to_have_text(re.compile(r"\(1 h\)$"))

    # Every chart bands the episodes that overlap the hour on screen, oldest first.
    charts = set(chart_lengths(page))
    assert charts == HOST_CHARTS | GPU_CHARTS
    for chart in charts:
        assert [b["episode"] for b in bands(page, chart)] == [str(idle.pk), str(hot.pk), str(slow.pk)], chart
    shown = {b["episode"]: b for b in bands(page, "gpu-temperature")}
    assert shown[str(hot.pk)]["status"] == "firing" and shown[str(hot.pk)]["rule"] == "hot GPU"
    assert shown[str(slow.pk)]["status"] == "pending"
    assert shown[str(idle.pk)]["status"] == "resolved" and shown[str(idle.pk)]["silenced"] == "false"
    assert shown[str(hot.pk)]["title"].startswith("hot GPU · firing\n")
    assert shown[str(hot.pk)]["title"].endswith("\n91.5\nGPU 1 at 91.5 °C")
    # A resolved band spans its episode; a firing one reaches the present.
    place = """([id, start, end]) => {
        const u = window.trainwatch.charts.cpu;
        const band = document.querySelector(`#chart-cpu .alert-band[data-episode="${id}"]`);
        return [parseFloat(band.style.left), parseFloat(band.style.width),
                u.valToPos(start, "x"), u.valToPos(Math.min(end, u.scales.x.max), "x")];
    }"""
    left, width, start, end = page.evaluate(place, [idle.pk, minutes(50).timestamp(), minutes(40).timestamp()])
    assert left == pytest.approx(start, abs=0.5) and width == pytest.approx(end - start, abs=0.5)
    left, width, start, end = page.evaluate(place, [hot.pk, minutes(20).timestamp(), time.time() + 60])
    assert left == pytest.approx(start, abs=0.5) and left + width == pytest.approx(end, abs=0.5)

    # Six hours reach back to the earlier episode.
    drawn = page.evaluate("window.trainwatch.drawCount")
    page.click('#ranges button[data-range="6h"]')
    wait_drawn(page, drawn + 1)
    expect(page.locator("#chart-cpu .alert-band")).to_have_count(4)
    assert [b["episode"] for b in bands(page, "cpu")][0] == str(earlier.pk)

    # A click on a badge opens its server, as a click on the server does.
    drawn = page.evaluate("window.trainwatch.drawCount")
    grey.click()
    wait_drawn(page, drawn + 1)
    assert query(page) == {"server": "cpu-node-07", "range": "6h"}
    expect(page.locator('#fleet a[aria-current="true"]')).to_have_attribute("data-slug", "cpu-node-07")
    expect(page.locator("#alerts-open li")).to_have_count(1)
    item = page.locator("#alerts-open li").first
    expect(item).to_have_attribute("data-episode", str(muted.pk))
    expect(item).to_have_attribute("data-silenced", "true")
    expect(item.locator(".alert-status")).to_have_text("silenced")
    expect(page.locator("#alerts-recent")).to_have_count(0)
    expect(page.locator("#chart-cpu .alert-band")).to_have_count(1)
    assert bands(page, "cpu")[0]["episode"] == str(muted.pk)
    expect(page.locator("#chart-cpu .alert-band")).to_have_class("alert-band firing silenced")
    # Back returns to gpu-box-01, its list and its bands.
    page.go_back()
    expect(page.locator("#chart-cpu .alert-band")).to_have_count(4)
    expect(page.locator("#alerts-open li")).to_have_count(2)


def test_the_refresh_picks_up_new_and_resolved_alerts(alice_page, fleet):
    page = alice_page
    page.goto("/?server=gpu-box-01&range=1h")
    wait_drawn(page)
    expect(page.locator("#fleet .alert-badge:not(.hidden)")).to_have_count(0)
    expect(page.locator("#alerts-panel")).to_have_count(0)
    expect(page.locator("#charts .alert-band")).to_have_count(0)

    # The page asks for alerts at the selected server's sample interval (10 s here).
    started = timezone.now() - timedelta(minutes=5)
    hot = episode("hot GPU", fleet["gpu"], "firing", started, fired_at=started, value=88.0)
    badge = page.locator('#fleet li[data-slug="gpu-box-01"] .alert-badge')
    expect(badge).to_have_text("1", timeout=25_000)
    expect(badge).to_have_attribute("data-silenced", "false")
    expect(page.locator("#alerts-open li")).to_have_count(1)
    expect(page.locator("#alerts-open li").first).to_have_attribute("data-episode", str(hot.pk))
    expect(page.locator("#chart-gpu-temperature .alert-band")).to_have_count(1)
    expect(page.locator("#chart-gpu-temperature .alert-band")).to_have_attribute("data-status", "firing")

    # Once it resolves, the badge goes, the list moves it under the resolved ones, the band stays.
    AlertEpisode.objects.filter(pk=hot.pk).update(state="resolved", ended_at=timezone.now())
    expect(badge).to_be_hidden(timeout=25_000)
    expect(page.locator("#alerts-open li.none")).to_have_text("Nothing firing or pending.")
    expect(page.locator("#alerts-recent li")).to_have_count(1)
    expect(page.locator("#chart-gpu-temperature .alert-band")).to_have_attribute("data-status", "resolved")
