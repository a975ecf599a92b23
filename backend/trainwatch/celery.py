from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trainwatch.settings")

app = Celery("trainwatch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def close_old_connections(**kwargs) -> None:
    """As between two requests: drop a connection that broke or outlived CONN_MAX_AGE."""
    from django.db import close_old_connections as close

    close()
