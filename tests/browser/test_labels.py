"""The page's bottleneck labels are the classifier's: the same names, in its order, with its titles,
and each one has its own colour and a line of help on the page."""

from __future__ import annotations

from monitoring.catalogue import LABELS, title_for


def test_the_page_takes_its_labels_from_the_classifier(alice_page):
    page = alice_page
    page.goto("/")
    page.wait_for_function("() => window.TW && window.TW.labels")
    shown = page.evaluate(
        """() => TW.labels.LABEL_NAMES.map(name => ({
            name, title: TW.labels.titleFor(name), color: TW.labels.labelColor(name), help: TW.labels.helpFor(name),
        }))"""
    )
    assert [label["name"] for label in shown] == list(LABELS)
    assert [label["title"] for label in shown] == [title_for(label) for label in LABELS]
    assert all(label["help"] for label in shown), "a label has no help text in labels.js"
    assert len({label["color"] for label in shown}) == len(LABELS), "two labels share a colour"
