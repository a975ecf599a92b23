"""TrainWatch settings. Everything a deployment changes comes from the environment
(see the configuration table in README.md); the readers in env.py refuse bad values."""

from __future__ import annotations

from pathlib import Path

from .env import (
    broker_url,
    database_from_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = BASE_DIR.parent

# Only for local use: production sets DJANGO_SECRET_KEY (`manage.py check --deploy` says so).
INSECURE_DEFAULT_SECRET_KEY = "django-insecure-trainwatch-local-development-only"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", INSECURE_DEFAULT_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "monitoring",
]

MIDDLEWARE = [
    # Outermost, so that it sees every answer under /api/, even one made of an exception.
    "monitoring.middleware.ApiErrorsMiddleware",
    # A header line over the limit: 431 before anything reads the request.
    "monitoring.middleware.HeaderLimitMiddleware",
    # Ingest goes straight to its view from here (a Host check on the way).
    "monitoring.middleware.IngestFastPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

# Behind a TLS-terminating proxy (production): trust its X-Forwarded-Proto, send cookies
# over HTTPS only, redirect plain HTTP and tell browsers to stay on HTTPS (HSTS).
DJANGO_SECURE_PROXY = env_bool("DJANGO_SECURE_PROXY", False)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
if DJANGO_SECURE_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Health checks come from inside the container network, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Joining browsers' preload list binds every subdomain for good: an operator's choice
        # (DJANGO_HSTS_PRELOAD=1), not a default, so its reminder is silenced.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_DAYS", 14, minimum=1) * 86400
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy: scripts, styles, fonts and fetches from this site only, no inline
# script or style, no plugins, and no page may frame ours. Forms post here; Google sign-in's form
# is answered with a redirect to Google, which browsers also hold to form-action.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'", "https://accounts.google.com"],
    }
}

ROOT_URLCONF = "trainwatch.urls"
WSGI_APPLICATION = "trainwatch.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_url("DATABASE_URL", "postgres://trainwatch:trainwatch@127.0.0.1:5432/trainwatch")}
# A connection is checked before a request (or task) reuses it, so a database restart costs
# no request: the broken connection is replaced on the spot.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", "5")
# The web process serves many requests at once on gevent (gunicorn.conf.py sets a pool size):
# they share a pool of connections. Elsewhere (Celery workers, commands) each process keeps
# one connection between tasks for DATABASE_CONN_MAX_AGE seconds.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0, minimum=0)
if DATABASE_POOL_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": min(2, DATABASE_POOL_SIZE),
        "max_size": DATABASE_POOL_SIZE,
        # A request that finds every connection busy waits this long, then answers 503.
        "timeout": float(env_int("DATABASE_POOL_TIMEOUT_SECONDS", 10, minimum=1)),
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Sign-in: Google through allauth, then the allowlist --------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
# Who may see the dashboard: exact emails, or every address of exact domains (case-insensitive).
MONITORING_ALLOWED_EMAILS = [e.lower() for e in env_list("MONITORING_ALLOWED_EMAILS")]
MONITORING_ALLOWED_DOMAINS = [d.lower().lstrip("@") for d in env_list("MONITORING_ALLOWED_DOMAINS")]
# allauth's email/password form at /accounts/login/, for local use and tests.
MONITORING_PASSWORD_LOGIN = env_bool("MONITORING_PASSWORD_LOGIN", False)
GOOGLE_CLIENT_ID = env_str("GOOGLE_CLIENT_ID", "")
GOOGLE_CLIENT_SECRET = env_str("GOOGLE_CLIENT_SECRET", "")

SOCIALACCOUNT_PROVIDERS = {
    "google": {
        "APPS": (
            [{"client_id": GOOGLE_CLIENT_ID, "secret": GOOGLE_CLIENT_SECRET, "key": ""}] if GOOGLE_CLIENT_ID else []
        ),
        "SCOPE": ["openid", "profile", "email"],
        "AUTH_PARAMS": {"access_type": "online", "prompt": "select_account"},
        "OAUTH_PKCE_ENABLED": True,
    }
}
SOCIALACCOUNT_ONLY = not MONITORING_PASSWORD_LOGIN
SOCIALACCOUNT_ADAPTER = "monitoring.dashboard.AllowlistSocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
# Google verifies the addresses it vouches for: its sign-in reaches the local user of that email.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
ACCOUNT_ADAPTER = "monitoring.dashboard.ClosedSignupAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
# Signing in needs no confirmed address; the allowlist counts only confirmed ones (dashboard/auth.py).
ACCOUNT_EMAIL_VERIFICATION = "none"
# Sign-in attempts are rate-limited (allauth's: 30 a minute per client address; here: 10 failures
# a minute per address, and for one account MONITORING_LOGIN_ATTEMPTS_LIMIT failures in 5
# minutes), counted in the shared cache at the end of this file. The
# Django admin signs in through the same form (trainwatch/urls.py), never with its own.
ACCOUNT_RATE_LIMITS = {
    "login_failed": f"10/m/ip,{env_int('MONITORING_LOGIN_ATTEMPTS_LIMIT', 5, minimum=1)}/5m/key",
}
# Behind the proxy, the client's address is the last one it appended to X-Forwarded-For.
ALLAUTH_TRUSTED_PROXY_COUNT = 1 if DJANGO_SECURE_PROXY else 0
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# --- Mail: password reset and confirming an address (password sign-in only) ----------------
# MONITORING_MAIL: smtp (EMAIL_HOST and friends), console (printed to the log: local use), or
# off. Off, or password sign-in off, means no page that sends mail exists.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "TrainWatch <trainwatch@localhost>")
MONITORING_MAIL = env_choice("MONITORING_MAIL", "smtp" if EMAIL_HOST else "console", ("smtp", "console", "off"))
EMAIL_BACKEND = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "off": "django.core.mail.backends.dummy.EmailBackend",
}[MONITORING_MAIL]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Front-end libraries come from npm (package.json, installed by `make frontend`), never copied by hand.
STATICFILES_DIRS = [("vendor/uplot", PROJECT_DIR / "node_modules" / "uplot" / "dist")]
# Production runs collectstatic and serves hashed, compressed files; elsewhere whitenoise
# serves straight from the app and npm folders.
DJANGO_STATIC_MANIFEST = env_bool("DJANGO_STATIC_MANIFEST", False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if DJANGO_STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not DJANGO_STATIC_MANIFEST
if not DJANGO_STATIC_MANIFEST:
    # Whitenoise also looks in STATIC_ROOT; an empty one spares a warning at every start.
    STATIC_ROOT.mkdir(exist_ok=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
}

# --- Celery ------------------------------------------------------------------
# The broker carries only "classify this server" nudges and beat ticks; losing one
# is harmless because the sweeper finds unclassified snapshots in the database.
CELERY_BROKER_URL = broker_url("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_ACKS_LATE = True
# Keep database connections across tasks (Celery otherwise opens one per task, and a new
# PostgreSQL backend costs more than classifying a sample); broken or old ones are closed
# before each task as Django does between requests (trainwatch/celery.py).
CELERY_DB_REUSE_MAX = 1000
# Tasks are idempotent, so one cut off by a lost broker connection is simply redelivered.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Ingest must answer quickly even with the broker gone: fail fast, never block.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
CELERY_BEAT_SCHEDULE = {
    "sweep-unclassified": {
        "task": "monitoring.tasks.sweep_unclassified",
        "schedule": float(env_int("MONITORING_SWEEP_INTERVAL_SECONDS", 30, minimum=1)),
    },
    "refresh-tiers": {
        "task": "monitoring.tasks.refresh_tiers",
        "schedule": float(env_int("MONITORING_TIER_REFRESH_SECONDS", 60, minimum=1)),
    },
    "apply-retention": {
        "task": "monitoring.tasks.apply_retention",
        "schedule": float(env_int("MONITORING_RETENTION_INTERVAL_SECONDS", 3600, minimum=60)),
    },
    "compress-chunks": {
        "task": "monitoring.tasks.compress_chunks",
        "schedule": float(env_int("MONITORING_COMPRESS_INTERVAL_SECONDS", 3600, minimum=60)),
    },
    # Offline rules fire within their `for` and this many seconds.
    "evaluate-offline-alerts": {
        "task": "monitoring.tasks.evaluate_offline_alerts",
        "schedule": float(env_int("MONITORING_ALERT_OFFLINE_INTERVAL_SECONDS", 15, minimum=1)),
    },
    # Notices that failed (or that the broker did not take) are tried again from here.
    "deliver-due-alerts": {
        "task": "monitoring.tasks.deliver_due_alerts",
        "schedule": float(env_int("MONITORING_ALERT_RETRY_INTERVAL_SECONDS", 15, minimum=1)),
    },
}

# --- TrainWatch ----------------------------------------------------------------
# Where people open the dashboard: alert notices link to it.
MONITORING_PUBLIC_URL = env_str("MONITORING_PUBLIC_URL", "http://localhost:8000")
# Largest ingest body accepted; bigger ones get 413.
MONITORING_INGEST_MAX_BODY_BYTES = env_int("MONITORING_INGEST_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# How long ingest trusts what it read of a server (its token's hash, whether it is active): a
# rotated token or a disabled server stops being accepted within this many seconds.
MONITORING_INGEST_SERVER_CACHE_SECONDS = env_float("MONITORING_INGEST_SERVER_CACHE_SECONDS", 5.0, minimum=0.0)
# The batch form: at most this many samples per request (0 turns batches off) in a body of at
# most this many bytes, inflated.
MONITORING_INGEST_MAX_BATCH = env_int("MONITORING_INGEST_MAX_BATCH", 1000, minimum=0)
MONITORING_INGEST_MAX_BATCH_BYTES = env_int("MONITORING_INGEST_MAX_BATCH_BYTES", 32 * 1024 * 1024, minimum=1024)
# Counters become rates only against a previous sample at most this old.
MONITORING_RATE_MAX_GAP_SECONDS = env_int("MONITORING_RATE_MAX_GAP_SECONDS", 300, minimum=1)
# A running workload's range is written again (its last sample moved on) at most this often per
# web process; a workload that leaves the GPUs has its true end written with the next sample.
MONITORING_WORKLOAD_RESOLUTION_SECONDS = env_int("MONITORING_WORKLOAD_RESOLUTION_SECONDS", 30, minimum=0)
# A sample stamped further than this in the future is refused (a node's clock is off).
MONITORING_FUTURE_TOLERANCE_SECONDS = env_int("MONITORING_FUTURE_TOLERANCE_SECONDS", 600, minimum=0)
# Snapshots left unclassified this long are picked up by the sweeper.
MONITORING_SWEEP_GRACE_SECONDS = env_int("MONITORING_SWEEP_GRACE_SECONDS", 10, minimum=0)
# Retry-After sent with 503 while the database is unreachable.
MONITORING_RETRY_AFTER_SECONDS = env_int("MONITORING_RETRY_AFTER_SECONDS", 5, minimum=1)
# Dashboard APIs: each query's time limit, and how many of them one web worker runs at once
# (the rest of its connection pool stays free for ingest). source=raw serves windows up to
# MONITORING_RAW_MAX_MINUTES; longer ones come from the tiers.
MONITORING_DASHBOARD_STATEMENT_TIMEOUT_SECONDS = env_int(
    "MONITORING_DASHBOARD_STATEMENT_TIMEOUT_SECONDS", 15, minimum=1
)
MONITORING_DASHBOARD_CONCURRENCY = env_int(
    "MONITORING_DASHBOARD_CONCURRENCY", max(1, DATABASE_POOL_SIZE // 2) if DATABASE_POOL_SIZE else 4, minimum=1
)
MONITORING_RAW_MAX_MINUTES = env_int("MONITORING_RAW_MAX_MINUTES", 24 * 60, minimum=1)
# The longest window /api/metrics/history/ serves (90 days), and the most points it returns.
MONITORING_MAX_HISTORY_MINUTES = env_int("MONITORING_MAX_HISTORY_MINUTES", 90 * 24 * 60, minimum=1)
MONITORING_HISTORY_MAX_POINTS = env_int("MONITORING_HISTORY_MAX_POINTS", 1000, minimum=10)
# Tiers: continuous aggregates where the edition has them (auto), or rollup tables.
# Resolved alert episodes (and their notices) older than this are deleted by the retention task.
MONITORING_ALERT_HISTORY_DAYS = env_int("MONITORING_ALERT_HISTORY_DAYS", 90, minimum=1)
MONITORING_TIER_BACKEND = env_choice("MONITORING_TIER_BACKEND", "auto", ("auto", "continuous", "rollup"))
# How far back late samples (a spool replayed after an outage) are still rolled up.
MONITORING_TIER_LATE_DAYS = env_int("MONITORING_TIER_LATE_DAYS", 2, minimum=1)
# Beat rolls up (or materializes) a bucket once it ended this long ago.
MONITORING_TIER_SETTLE_SECONDS = env_int("MONITORING_TIER_SETTLE_SECONDS", 30, minimum=0)
# Full edition: beat compresses raw chunks older than this.
MONITORING_COMPRESS_AFTER_DAYS = env_int("MONITORING_COMPRESS_AFTER_DAYS", 7, minimum=1)
# Redis key prefix for "classification pending" markers (one per server).
MONITORING_REDIS_PREFIX = env_str("MONITORING_REDIS_PREFIX", "trainwatch")

# The cache (sign-in rate limits) lives in Redis, shared by every web worker. When Redis is
# down it acts as an empty cache instead of failing the request.
CACHES = {
    "default": {
        "BACKEND": "trainwatch.cache.ForgivingRedisCache",
        "LOCATION": CELERY_BROKER_URL,
        "KEY_PREFIX": MONITORING_REDIS_PREFIX,
        "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
    }
}
