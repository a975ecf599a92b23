"""Hypothesis profiles for the property tests: reproducible in CI, exploring on a desk.

- "ci", when the CI environment variable is set (CI runs `bash .ci/run` with CI=true): the
  same examples on every run (derandomize), no example database, no deadline (a loaded runner
  is slow, not wrong), and a `@reproduce_failure` blob printed with any failure.
- "dev", otherwise: new random examples on every run, and the failures found so far kept in
  the example database under .hypothesis/ at the repository root (never committed), so that
  they are tried first next time.

HYPOTHESIS_PROFILE=ci|dev picks one whatever CI says. conftest.py loads the profile before any
test module is imported, as a test's own `@settings(...)` takes what it leaves unset from the
profile loaded at that moment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parent.parent

settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
)
settings.register_profile(
    "dev",
    parent=settings.get_profile("default"),
    database=DirectoryBasedExampleDatabase(ROOT / ".hypothesis" / "examples"),
)


def profile_name(environ: Mapping[str, str]) -> str:
    name = environ.get("HYPOTHESIS_PROFILE")
    if name:
        return name
    return "ci" if environ.get("CI") else "dev"


def load(environ: Mapping[str, str] | None = None) -> str:
    """Load the profile the environment asks for; its name."""
    name = profile_name(os.environ if environ is None else environ)
    settings.load_profile(name)
    return name
