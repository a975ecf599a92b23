#!/usr/bin/env python
"""Django's command-line utility for TrainWatch."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # Works from the project root as well as from backend/.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trainwatch.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
