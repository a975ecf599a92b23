"""TimescaleDB's own background jobs, and which of them fail.

TrainWatch does not depend on them: beat refreshes the tiers, compresses old chunks and
applies retention itself. The database still runs jobs of its own (job history retention,
telemetry) and whatever a DBA adds, and these can fail without anyone noticing (on some
PostgreSQL minors every background job of TimescaleDB fails). `manage.py tiers status`
and /healthz list the failing ones.

Only the Timescale-licensed edition is looked at: on the Apache edition TrainWatch adds
no jobs, so nothing is reported there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import connection

from . import definitions as tiers

# The newest error of each failing job, where the version has job_errors (2.15 and later).
FAILING_SQL = """
SELECT s.job_id, j.application_name, j.proc_name, coalesce(s.hypertable_name, ''), s.job_status,
       s.total_runs, s.total_failures, s.last_run_started_at,
       nullif(s.last_successful_finish, '-infinity'), e.err_message, e.finish_time
FROM timescaledb_information.job_stats s
JOIN timescaledb_information.jobs j ON j.job_id = s.job_id
LEFT JOIN LATERAL ({errors}) e ON true
WHERE s.last_run_status = 'Failed'
ORDER BY s.job_id
"""
LAST_ERROR_SQL = (
    "SELECT err_message, finish_time FROM timescaledb_information.job_errors "
    "WHERE job_id = s.job_id ORDER BY start_time DESC LIMIT 1"
)
NO_ERROR_SQL = "SELECT NULL::text AS err_message, NULL::timestamptz AS finish_time"


@dataclass(frozen=True)
class FailingJob:
    job_id: int
    name: str  # e.g. "Job History Log Retention Policy [3]"
    proc: str
    hypertable: str  # '' when the job is not tied to one
    status: str  # Scheduled, Running or Paused
    runs: int
    failures: int
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("last_run_at", "last_success_at", "last_error_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    def describe(self) -> str:
        since = self.last_success_at.isoformat() if self.last_success_at else "never"
        line = f"{self.name} ({self.proc}): {self.failures} of {self.runs} run(s) failed, last success {since}"
        return line + (f"; last error: {self.last_error}" if self.last_error else "")


# The query for this database, looked up once per process: /healthz asks on every call, and
# neither the edition nor the catalog's views change while the processes run. None: Apache.
_query: str | None = None
_looked_up = False


def _failing_query(cursor) -> str | None:
    global _query, _looked_up
    if not _looked_up:
        if tiers.edition(cursor) == "timescale":
            cursor.execute("SELECT to_regclass('timescaledb_information.job_errors') IS NOT NULL")
            _query = FAILING_SQL.format(errors=LAST_ERROR_SQL if cursor.fetchone()[0] else NO_ERROR_SQL)
        _looked_up = True
    return _query


def failing() -> list[FailingJob]:
    """Jobs whose last run failed (an empty list on the Apache edition)."""
    with connection.cursor() as cursor:
        query = _failing_query(cursor)
        if query is None:
            return []
        cursor.execute(query)
        return [FailingJob(*row) for row in cursor.fetchall()]
