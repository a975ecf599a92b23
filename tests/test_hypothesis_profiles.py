"""Which Hypothesis profile a run gets: reproducible examples under CI, exploration elsewhere."""

from __future__ import annotations

from hypothesis import settings

from tests.hypothesis_profiles import ROOT, profile_name


def test_ci_runs_the_same_examples_every_time_and_keeps_no_database():
    assert profile_name({"CI": "true"}) == "ci"
    ci = settings.get_profile("ci")
    assert (ci.derandomize, ci.database, ci.print_blob, ci.deadline) == (True, None, True, None)


def test_a_desk_explores_and_keeps_failures_under_the_repository():
    assert profile_name({}) == "dev"
    dev = settings.get_profile("dev")
    assert dev.derandomize is False
    assert dev.database.path == ROOT / ".hypothesis" / "examples"


def test_hypothesis_profile_wins_over_ci():
    assert profile_name({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}) == "dev"
    assert profile_name({"HYPOTHESIS_PROFILE": "ci"}) == "ci"
