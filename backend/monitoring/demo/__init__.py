"""Demo and benchmark data: a synthetic node's history, realistic enough that the classifier
reads every label the way it was made. The rest of the project imports this module only; its
modules are:

- timeline.py: the phases of a training run and a node's schedule of them;
- generator.py: rows of one node along a schedule, with counters that only grow, for the GPU
  models it knows.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {"generator": ("GPU_MODELS", "Generator", "columns")}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
