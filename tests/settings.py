"""Settings for the test suite: the app's own, with a broker database of its own.

Tests publish to Redis database 15 (same server as CELERY_BROKER_URL) so that a
worker running for development never picks up a test's tasks, and vice versa.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from trainwatch.settings import *  # noqa: F403
from trainwatch.settings import CELERY_BROKER_URL as _APP_BROKER_URL

TEST_REDIS_DB = 15
CELERY_BROKER_URL = urlunsplit(urlsplit(_APP_BROKER_URL)._replace(path=f"/{TEST_REDIS_DB}"))
MONITORING_REDIS_PREFIX = "trainwatch-test"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
