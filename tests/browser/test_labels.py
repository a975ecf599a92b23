"""The page's bottleneck labels are the classifier's: the same names, in its order, each shown by the
name people read ("GPU-bound", not the APIs' "Gpu Bound" title) wherever the page shows one, with its
own colour and a line of help."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from monitoring.catalogue import DISPLAY_NAMES, LABELS, title_for
from tests.browser.conftest import wait_drawn

# The APIs' titles that people should never read on the page ("Idle" and "Balanced" are both).
API_TITLES = [title_for(label) for label in LABELS if title_for(label) != DISPLAY_NAMES[label]]


def test_the_page_takes_its_labels_from_the_catalogue(alice_page):
    page = alice_page
    page.goto("/")
    page.wait_for_function("() => window.TW && window.TW.labels")
    shown = page.evaluate(
        """() => TW.labels.LABEL_NAMES.map(name => ({
            name, display: TW.labels.displayName(name), color: TW.labels.labelColor(name), help: TW.labels.helpFor(name),
        }))"""
    )
    assert [label["name"] for label in shown] == list(LABELS)
    assert [label["display"] for label in shown] == [
        "GPU-bound",
        "CPU-bound",
        "I/O-bound",
        "Memory-bound",
        "GPU throttled",
        "GPU idle, memory held",
        "Idle",
        "Balanced",
    ]
    assert all(label["help"] for label in shown), "a label has no help text in labels.js"
    assert len({label["color"] for label in shown}) == len(LABELS), "two labels share a colour"


def no_api_title(page) -> None:
    """Neither the page's text nor any tooltip holds an API title such as "Gpu Bound"."""
    texts = page.evaluate(
        "() => [document.body.textContent, ...[...document.querySelectorAll('[title]')].map(el => el.title)]"
    )
    for title in API_TITLES:
        assert not [t for t in texts if title in t], f"{title!r} on the page"


def test_every_label_on_the_page_reads_by_its_display_name(alice_page, fleet):
    page = alice_page
    gpu_box = fleet["gpu"]
    page.goto("/?server=gpu-box-01&range=6h")
    wait_drawn(page)
    label = gpu_box.bottleneck_label
    # The banner, the fleet list's chip and the timeline's key (every label of 3 hours of history).
    expect(page.locator("#bottleneck .label-title")).to_have_text(DISPLAY_NAMES[label])
    expect(page.locator(f'#fleet li[data-slug="gpu-box-01"] .chip[data-label="{label}"]')).to_have_text(
        DISPLAY_NAMES[label]
    )
    key = page.locator("#chart-bottleneck .band-key .chip")
    expect(key).to_have_count(len(LABELS))
    for chip in key.all():
        name = DISPLAY_NAMES[chip.get_attribute("data-label")]
        expect(chip).to_have_text(re.compile(rf"^{re.escape(name)} \d+%$"))
    # The timeline's value where the cursor is: a label by its name.
    values = page.evaluate(
        """() => { const u = window.trainwatch.charts.bottleneck;
                   return u.data[1].filter(v => v != null).slice(0, 50).map(v => u.series[1].value(u, v)); }"""
    )
    assert values and set(values) <= set(DISPLAY_NAMES.values())
    no_api_title(page)

    # The fleet report: its legend, the table's label columns and its top bottleneck chips.
    page.goto("/?view=fleet&range=24h")
    page.wait_for_function("() => window.trainwatch && window.trainwatch.report")
    expect(page.locator("#fleet-table tbody tr[data-slug]").first).to_be_visible()
    legend = page.eval_on_selector_all(
        "#fleet-legend .legend-item", "items => items.map(i => [i.dataset.label, i.childNodes[1].textContent])"
    )
    assert dict(legend) == {**DISPLAY_NAMES, "unclassified": "Unclassified"}
    heads = page.eval_on_selector_all(
        "#fleet-table thead th.label", "ths => ths.map(th => [th.dataset.key, th.textContent.trim()])"
    )
    assert {key: text for key, text in heads if key in DISPLAY_NAMES} == DISPLAY_NAMES
    top = page.locator('#fleet-table tr[data-slug="gpu-box-01"] .chip')
    expect(top).to_have_text(DISPLAY_NAMES[top.get_attribute("data-label")])
    no_api_title(page)
