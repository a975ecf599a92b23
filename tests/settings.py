"""Settings for the test suite: the app's own, with a broker database of its own.

Tests publish to Redis database 15 (same server as CELERY_BROKER_URL) so that a
worker running for development never picks up a test's tasks, and vice versa.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from trainwatch.settings import *  # noqa: F403
from trainwatch.settings import CELERY_BROKER_URL as _APP_BROKER_URL
from trainwatch.settings import DATABASES

# Two suites can run side by side on one machine when each names its own database and
# broker database (e.g. TRAINWATCH_TEST_DB=test_mine TRAINWATCH_TEST_REDIS_DB=12).
TEST_REDIS_DB = int(os.environ.get("TRAINWATCH_TEST_REDIS_DB", "15"))
if os.environ.get("TRAINWATCH_TEST_DB"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TRAINWATCH_TEST_DB"]}
CELERY_BROKER_URL = urlunsplit(urlsplit(_APP_BROKER_URL)._replace(path=f"/{TEST_REDIS_DB}"))
# Celery reads the CELERY_BROKER_URL environment variable before its configuration (`make test`
# exports it): point both at the test database.
os.environ["CELERY_BROKER_URL"] = CELERY_BROKER_URL
MONITORING_REDIS_PREFIX = "trainwatch-test"
CACHES["default"].update(LOCATION=CELERY_BROKER_URL, KEY_PREFIX=MONITORING_REDIS_PREFIX)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The personas of the dashboard tests: alice is allowlisted by email, carol by her
# domain; bob signs in but is on neither list.
MONITORING_ALLOWED_EMAILS = ["alice@example.com"]
MONITORING_ALLOWED_DOMAINS = ["corp.example"]
MONITORING_PASSWORD_LOGIN = True
SOCIALACCOUNT_ONLY = False
GOOGLE_CLIENT_ID = "test-client-id.apps.googleusercontent.com"
GOOGLE_CLIENT_SECRET = "test-client-secret"
SOCIALACCOUNT_PROVIDERS["google"]["APPS"] = [  # noqa: F405
    {"client_id": GOOGLE_CLIENT_ID, "secret": GOOGLE_CLIENT_SECRET, "key": ""}
]

# Every test registers its servers afresh, under the same slugs: ingest must not remember a
# previous test's (the cache has a test of its own).
MONITORING_INGEST_SERVER_CACHE_SECONDS = 0.0
