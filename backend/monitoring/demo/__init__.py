"""Demo and benchmark data: a synthetic node's history, realistic enough that the classifier
reads every label the way it was made. The rest of the project imports this module only; its
modules are:

- timeline.py: the phases of a training run and a node's schedule of them (or a live one, a run
  in minutes);
- generator.py: rows of one node along a schedule, with counters that only grow, for the GPU
  models it knows;
- fleet.py: the demo fleet of `make run DEMO=1`;
- feeder.py: the demo fleet's history going on live, posted through the ingest API.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "generator": ("GPU_MODELS", "Generator", "columns"),
    "fleet": ("FLEET", "DemoServer"),
    "feeder": ("Feed", "Poster", "ingest_sample", "resume_point", "run as run_feeder"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
