"""Ingest: what an agent posts becomes rows, once, and the server's counters follow. The rest of
the app imports this module only; its modules are:

- views.py: the ingest endpoint (token, body limits, gzip, single samples and batches);
- schema.py: the rules of every field, built from the catalogue, as msgspec structs;
- body.py: a body read (one sample, the minimal form or a batch), each problem in one line;
- validation.py: what msgspec cannot check of a sample (unique devices, timestamps, labels);
- rates.py: what ingest derives from a sample and the one before it;
- store.py: each sample written, with its derived figures, in one round trip;
- counters.py: every statement that writes a server row's counters.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "views": ("ingest_metrics",),
    "counters": ("forget_chunk", "record_pass", "recount"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
