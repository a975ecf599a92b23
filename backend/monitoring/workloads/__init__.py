"""Workloads: which job, pod, container or process ran on a server, and when, as time ranges.

The agent names each GPU process's workload; ingest extends the ranges in the statement that
writes the sample, and readers join the ranges to the samples and tiers by time. A sample row
never carries a job label. The rest of the app imports this module only; its modules are:

- models.py: the rows (one per workload and unbroken stretch of time on one server);
- ranges.py: what a batch of samples says of its workloads, and ingest's CTEs that write it;
- queries.py: reading them back (the API's list, the workloads of a snapshot's processes) and
  retention.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "models": ("Workload",),
    "ranges": ("INGEST_CTES", "changes", "split_processes", "written"),
    "queries": ("for_processes", "listing", "prune"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
