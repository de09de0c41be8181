"""Settings shared by every environment; values come from the environment (12-factor)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

# Only safe for local use; production.py refuses to start with it.
DEFAULT_SECRET_KEY = "insecure-local-only-steerco-secret"
SECRET_KEY = env("SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # serves the API docs' Swagger UI from static files, not a CDN
    "django_htmx",
    "template_partials",
    "guardian",
    "django_guid",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "governance",
    "scorecards",
    "dependencies",
    "escalations",
    "escalations.collaboration",
    "config.operations",  # operators' commands: backup, restore, export and delete an organization
]

MIDDLEWARE = [
    "config.operations.web.request_metrics",  # first: times every request (docs/operations.md)
    "config.operations.logs.request_log",  # one log line per request, with what the middleware below learned
    "governance.middleware.request_id_guard",  # before django-guid: a malformed X-Request-ID is replaced
    "django_guid.middleware.guid_middleware",
    "config.replica.replica_reads",  # before anything reads: a page's queries go to the replica, if there is one
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "governance.middleware.NulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): a second factor in this session
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "governance.middleware.TenantMiddleware",
    "governance.identity.two_factor.TwoFactorRequiredMiddleware",  # after the tenant's: it reads request.membership
    # Last, as its documentation asks: turns a lockout raised by the axes backend into the login page's answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "governance.context_processors.tenancy",
                "escalations.context_processors.inbox",  # the navigation's task and unread counts
            ],
        },
    }
]


def _database(url: str) -> dict:
    database = env.db_url_config(url)
    database["ATOMIC_REQUESTS"] = False
    if database["ENGINE"] == "django.db.backends.postgresql":
        # The same backend, writing the tenant scope into every transaction for row-level security (governance.tenancy).
        database["ENGINE"] = "governance.postgresql"
    elif database["ENGINE"] == "django.db.backends.sqlite3":
        # `make run` writes from web, worker and beat at once: WAL lets readers go on beside the writer, IMMEDIATE
        # takes the write lock when a transaction starts (no "database is locked" halfway through) and waits up to
        # 20 s for it.
        database.setdefault("OPTIONS", {}).update(
            init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", transaction_mode="IMMEDIATE", timeout=20
        )
    database.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
    # Behind PgBouncer's transaction pooling (deploy/kubernetes/base/pgbouncer.ini), a server-side cursor cannot
    # outlive its transaction.
    database["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DATABASE_POOLED", default=False)
    return database


DATABASES = {"default": _database(env("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'steerco.sqlite3'}"))}
# A streaming replica of the primary for page reads (config/replica.py); tests use the test database under this alias.
if DATABASE_REPLICA_URL := env("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = _database(DATABASE_REPLICA_URL) | {"TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["config.replica.ReplicaRouter"]
# How long a browser that wrote reads its pages from the primary: longer than the replica's usual lag.
REPLICA_STICKY_SECONDS = env.int("REPLICA_STICKY_SECONDS", default=10)
# Every web request's transactions stop any statement running longer (PostgreSQL; 0 leaves the role's own), so that no
# request holds a web worker for long: the caller gets a 503. Tasks and commands keep the role's own timeout.
WEB_STATEMENT_TIMEOUT = timedelta(seconds=env.float("WEB_STATEMENT_TIMEOUT_SECONDS", default=10))
# Web and worker processes refuse a superuser or BYPASSRLS database role (production turns this on).
REFUSE_PRIVILEGED_DATABASE_ROLE = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "governance.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username+address before any password check
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "governance:home"
LOGOUT_REDIRECT_URL = "login"

# guardian would otherwise create an "AnonymousUser" row, which an email-login user model cannot hold.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # the server's; each organization has its own IANA zone for display and schedules
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Attachments (collaboration): on the filesystem under MEDIA_ROOT by default; ATTACHMENT_STORAGE=s3 keeps them in an
# S3-compatible bucket (MinIO in docker-compose.yml). Either way they are served only through the app, to members.
if env("ATTACHMENT_STORAGE", default="filesystem") == "s3":
    ATTACHMENTS_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("ATTACHMENT_S3_BUCKET", default="steerco-attachments"),
            "endpoint_url": env("ATTACHMENT_S3_ENDPOINT_URL", default=None),
            "access_key": env("ATTACHMENT_S3_ACCESS_KEY", default=None),
            "secret_key": env("ATTACHMENT_S3_SECRET_KEY", default=None),
            "region_name": env("ATTACHMENT_S3_REGION", default=None),
            "default_acl": "private",
            "file_overwrite": False,
            "querystring_auth": True,  # no URL of the bucket is ever handed out; signed if one were
        },
    }
else:
    ATTACHMENTS_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},  # files under MEDIA_ROOT/attachments/
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "attachments": ATTACHMENTS_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# Absolute links in emails sent outside a request (commands, workers).
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Steerco <steerco@localhost>")

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie; kept default for forms

# --- Browser security -------------------------------------------------------------------------------
# Every script and style comes from our own static files (tests/test_platform.py checks the templates), htmx runs
# with eval off and its indicator styles in app.css: nothing needs 'unsafe-inline' or 'unsafe-eval'. Images may be
# data: URIs (the API docs' Swagger UI draws its icons so). frame-ancestors repeats X-Frame-Options: DENY.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Login throttling (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one username from one address lock that
# pair out for LOGIN_COOLOFF_MINUTES; a success in between starts the count afresh. Keyed on the pair, so an
# attacker spraying one address cannot lock a colleague out from the office, and one guessing many passwords for
# a user is stopped. The audit log (security.login*, governance.security) is the record of logins, so axes keeps
# no access log of its own.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True
AXES_USERNAME_FORM_FIELD = "username"  # AuthenticationForm's field name, whatever USERNAME_FIELD is
AXES_USERNAME_CALLABLE = "governance.security.login_username"  # emails compare case-insensitively, as users do
AXES_LOCKOUT_CALLABLE = "governance.security.lockout_response"  # the login page, with the reason and the wait
# The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT reverse proxies that each append the address
# they saw to X-Forwarded-For, the entry the outermost one appended (governance.security.client_ip says why not
# django-ipware). Production defaults to one proxy, the TLS-terminating load balancer.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "governance.security.client_ip"

# Password reset requests: at most this many emails to one address, and requests from one client address, per
# window (governance.security.ThrottledPasswordResetView); over the limit the page answers as usual, sending none.
PASSWORD_RESET_EMAIL_LIMIT = env.int("PASSWORD_RESET_EMAIL_LIMIT", default=3)
PASSWORD_RESET_IP_LIMIT = env.int("PASSWORD_RESET_IP_LIMIT", default=10)
PASSWORD_RESET_WINDOW = timedelta(minutes=env.int("PASSWORD_RESET_WINDOW_MINUTES", default=60))

# An API token's use is audited at most once per token per this period (and its first use at once): an auditor
# sees when and from where a token was used, hour by hour, without one row per request of a loader that calls
# every few seconds. Refused tokens (revoked, or a deactivated member's) follow the same period.
API_TOKEN_AUDIT_EVERY = timedelta(minutes=env.int("API_TOKEN_AUDIT_EVERY_MINUTES", default=60))

# API tokens are stored as an HMAC under this key, kept apart from SECRET_KEY: rotating one must not void the other.
DEFAULT_API_TOKEN_KEY = "insecure-local-only-steerco-api-token-key"
API_TOKEN_KEY = env("API_TOKEN_KEY", default=DEFAULT_API_TOKEN_KEY)
# Webhook signing secrets are derived, not stored: HMAC(WEBHOOK_KEY, "webhook:<id>:<version>"). Defaults to
# API_TOKEN_KEY (which production checks); changing it changes every webhook's secret at once.
WEBHOOK_KEY = env("WEBHOOK_KEY", default=API_TOKEN_KEY)
# Organization secrets (governance.secrets) are encrypted with Fernet under these keys, comma-separated: the first
# encrypts, every one decrypts, so a key is rotated by putting a new one first and running manage.py
# rotate_secrets. The default is for development only (production refuses it): it is derived from a fixed phrase.
DEFAULT_SECRETS_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"insecure-local-only-steerco-secrets").digest()).decode()
SECRETS_KEYS = env.list("SECRETS_KEYS", default=[DEFAULT_SECRETS_KEY])
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=5)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT_SECONDS", default=10)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)  # backoff 2, 4, 8 ... minutes: about 4 hours
# Admins of any organization choose webhook URLs; unless allowed here, the sweep refuses addresses that resolve
# to loopback, private or link-local networks (the cloud metadata service, internal admin pages).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)

# Slack (docs/slack.md): one Slack app, installed into each organization's workspace with OAuth v2. The signing
# secret here is the app's; an organization may store its own (secret slack_signing_secret), which wins. The API
# and authorize URLs are Slack's unless a test points them at a fake on loopback.
SLACK_CLIENT_ID = env("SLACK_CLIENT_ID", default="")
SLACK_CLIENT_SECRET = env("SLACK_CLIENT_SECRET", default="")
SLACK_SIGNING_SECRET = env("SLACK_SIGNING_SECRET", default="")
SLACK_API_URL = env("SLACK_API_URL", default="https://slack.com/api/")
SLACK_OAUTH_AUTHORIZE_URL = env("SLACK_OAUTH_AUTHORIZE_URL", default="https://slack.com/oauth/v2/authorize")

# The measurements API: 10,000 items of ~100 bytes fit; forms never come close to this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=5 * 1024 * 1024)
API_RATE_LIMIT = env("API_RATE_LIMIT", default="600/m")  # requests per token
API_PAGE_SIZE = 100
API_MEASUREMENTS_PAGE_SIZE = 1000
# The rate limit's counters and the scorecard's rendered rows (scorecards.row_cache); Redis when several web processes
# share them (CACHE_URL=redis://...). In memory, room for a few thousand KPIs' rows (the default 300 would churn).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://?max_entries=10000")}

# Collaboration (docs/collaboration.md): how long an author may edit a comment; the largest attachment; how long a
# deleted attachment's file is kept before the purge sweep removes it; the longest a share link may be valid; how
# often an office screen moves to the next scorecard.
COMMENT_EDIT_WINDOW = timedelta(minutes=env.int("COMMENT_EDIT_MINUTES", default=15))
ATTACHMENT_MAX_BYTES = env.int("ATTACHMENT_MAX_BYTES", default=20 * 1024 * 1024)
ATTACHMENT_RETENTION = timedelta(days=env.int("ATTACHMENT_RETENTION_DAYS", default=30))
SHARE_LINK_MAX_VALIDITY = timedelta(days=env.int("SHARE_LINK_MAX_DAYS", default=90))
TV_ROTATE_SECONDS = env.int("TV_ROTATE_SECONDS", default=30)

INVITATION_TTL = timedelta(days=env.int("INVITATION_TTL_DAYS", default=7))
# A leaver's KPI waits this many of its organization's business days for the person asked to accept ownership,
# then as many again for the admins, before the executives are escalated to (escalations.engine.transfers).
LEAVER_TRANSFER_WAIT_BUSINESS_DAYS = env.int("LEAVER_TRANSFER_WAIT_BUSINESS_DAYS", default=2)

# CSV imports of measurements: the largest upload accepted, and the largest file imported inside the request
# (bigger ones go to a worker, so the request stays short and the page shows progress).
# Bounds of a measurement, for the API, CSV imports and pulls alike: no time before 1970 or further ahead than
# MEASUREMENT_MAX_FUTURE (clocks drift; more is a wrong zone or a typo), no value beyond +-MEASUREMENT_MAX_ABS, so
# that any sum over a window stays finite. Stored points outside them (from before the bounds) are not read.
MEASUREMENT_MAX_FUTURE = timedelta(hours=env.float("MEASUREMENT_MAX_FUTURE_HOURS", default=24))
MEASUREMENT_MAX_ABS = env.float("MEASUREMENT_MAX_ABS", default=1e15)
# Measurements are partitioned by month on PostgreSQL; a daily task keeps this many months' partitions made ahead.
MEASUREMENT_PARTITIONS_AHEAD = env.int("MEASUREMENT_PARTITIONS_AHEAD", default=3)
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
IMPORT_INLINE_MAX_ROWS = env.int("IMPORT_INLINE_MAX_ROWS", default=10_000)

DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    "VALIDATE_GUID": False,
    "RETURN_HEADER": True,
    "INTEGRATIONS": [],
}

# --- Celery -------------------------------------------------------------------------------------
# The embedded default needs no server: kombu's filesystem transport keeps messages under var/.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # An unacknowledged task (its worker died) goes back to the queue after this long; it must exceed the
    # hard time limit, or a slow task would run twice at once.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600)}
CELERY_TASK_IGNORE_RESULT = True  # sweeps write their outcome to the database, not to a result backend
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged after it ran, so a crash redelivers it
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ... including when the worker process itself dies
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long sweeps must not hoard messages another worker could run
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# One beat sends the sweeps, however many run. With Redis as the broker the beat is celery-redbeat's: it sends only
# while it holds a lock in Redis, renewed every tick and expiring after five ticks (BEAT_TICK_SECONDS); another beat
# waits for the lock and takes over once a dead holder's lock expires, from the schedule's state kept in Redis. The
# embedded default (`make run`, no Redis) keeps Celery's own file scheduler: one process, nothing to lock.
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BEAT_SCHEDULER = "redbeat.RedBeatScheduler"
    CELERY_REDBEAT_REDIS_URL = CELERY_BROKER_URL
    CELERY_REDBEAT_KEY_PREFIX = "steerco:beat:"
    CELERY_REDBEAT_REDIS_OPTIONS = {"health_check_interval": 30}  # its own, not the broker's transport options
    CELERY_BEAT_MAX_LOOP_INTERVAL = env.int("BEAT_TICK_SECONDS", default=5)  # the lock lives 5 ticks (25 s)
# Data to decision in seconds: an evaluation that wrote status changes or surges queues these at once (by name, as
# scorecards may not import escalations), and processing them queues the delivery of what it notified. The beat
# sweeps below stay the safety net: they catch whatever a lost message left behind.
STATUS_CHANGE_FOLLOWUPS = ["escalations.tasks.process_status_changes"]
# How many workers share the beat's evaluation sweep (scorecards.tasks.evaluate_kpis): the worker processes that
# can run at once, as each one is a core's worth of work.
EVALUATION_SWEEP_WORKERS = env.int("EVALUATION_SWEEP_WORKERS", default=2)
# Every sweep is declared here, in one place. Each is idempotent: two beats firing it twice is harmless.
SWEEP_EVERY = timedelta(seconds=env.int("SWEEP_EVERY_SECONDS", default=60))  # tests run beat faster
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {
        "task": "governance.tasks.heartbeat",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},  # a beat that is late by a whole period should not pile up
    },
    "pull-data-sources": {
        "task": "scorecards.tasks.pull_data_sources",
        "schedule": SWEEP_EVERY,
        "options": {"expires": 50},
    },
    "evaluate-kpis": {
        "task": "scorecards.tasks.evaluate_kpis",
        "schedule": SWEEP_EVERY,
        "options": {"expires": 50},
    },
    "process-status-changes": {
        "task": "escalations.tasks.process_status_changes",
        "schedule": SWEEP_EVERY,
        "options": {"expires": 50},
    },
    "advance-escalations": {
        "task": "escalations.tasks.advance_escalations",
        "schedule": SWEEP_EVERY,
        "options": {"expires": 50},
    },
    "deliver-notifications": {
        "task": "escalations.tasks.deliver_notifications",
        "schedule": SWEEP_EVERY,
        "options": {"expires": 50},
    },
    # Delivered notifications and finished webhook deliveries older than NOTIFICATION_RETENTION are deleted.
    "prune-notifications": {
        "task": "escalations.tasks.prune_notifications",
        "schedule": timedelta(hours=1),
        "options": {"expires": 50 * 60},
    },
    # Weekly digests fall due at 08:00 local on Mondays (escalations.reporting.digests); looking every five sweeps
    # is soon enough.
    "send-digests": {
        "task": "escalations.tasks.send_digests",
        "schedule": 5 * SWEEP_EVERY,
        "options": {"expires": 50},
    },
    # Daily digests go out when each organization's business hours open (escalations.notify.daily_digest).
    "send-daily-digests": {
        "task": "escalations.tasks.send_daily_digests",
        "schedule": 5 * SWEEP_EVERY,
        "options": {"expires": 50},
    },
    # Attachments deleted (or whose parent was) longer than ATTACHMENT_RETENTION ago lose their files.
    "purge-attachments": {
        "task": "escalations.collaboration.tasks.purge_attachments",
        "schedule": timedelta(hours=1),
        "options": {"expires": 50 * 60},
    },
    # Scheduled reports (escalations.reporting.subscriptions): each period is claimed by a row before it is sent, so
    # a second beat or a late sweep never sends one twice.
    "send-reports": {
        "task": "escalations.tasks.send_reports",
        "schedule": 5 * SWEEP_EVERY,
        "options": {"expires": 50},
    },
    # Manual KPIs: a period that ended asks its updaters for the value, a pending value its approver (deduplicated
    # per KPI and period in the organization's calendar, so looking every five sweeps is soon enough).
    "remind-manual-values": {
        "task": "escalations.tasks.remind_manual_values",
        "schedule": 5 * SWEEP_EVERY,
        "options": {"expires": 50},
    },
    # Measurement upkeep (scorecards.storage), daily: next months' partitions, then the day's roll-ups of raw points
    # past each organization's retention.
    "create-measurement-partitions": {
        "task": "scorecards.tasks.create_measurement_partitions",
        "schedule": crontab(minute=10, hour=2),
        "options": {"expires": 6 * 3600},
    },
    "roll-up-measurements": {
        "task": "scorecards.tasks.roll_up_measurements",
        "schedule": crontab(minute=20, hour=2),
        "options": {"expires": 6 * 3600},
    },
    # Hidden dependencies (dependencies.suggestions): Mondays 03:00 UTC, one task per organization.
    "suggest-dependencies": {
        "task": "dependencies.tasks.suggest_dependencies",
        "schedule": crontab(minute=0, hour=3, day_of_week="mon"),
        "options": {"expires": 6 * 3600},
    },
}
# Hidden dependencies: daily changes over `history_days`, lags 0..`max_lag` days, pairs with at least `min_points`
# days in common, a false discovery rate of `alpha` (Benjamini-Hochberg), the `per_kpi` strongest per KPI.
FORESIGHT_DISCOVERY = {
    "history_days": env.int("FORESIGHT_HISTORY_DAYS", default=180),
    "max_lag": env.int("FORESIGHT_MAX_LAG_DAYS", default=28),
    "min_points": env.int("FORESIGHT_MIN_POINTS", default=30),
    "alpha": env.float("FORESIGHT_FDR", default=0.05),
    "per_kpi": env.int("FORESIGHT_PER_KPI", default=3),
}
# How long delivered notifications and finished webhook deliveries are kept (their workstreams keep the timeline).
NOTIFICATION_RETENTION = timedelta(days=env.int("NOTIFICATION_RETENTION_DAYS", default=180))
# The owner's time to file a mitigation path when no escalation policy applies to a KPI.
DEFAULT_MITIGATION_DUE = timedelta(days=2)

# Data pulls (scorecards.connectors): limits that keep one slow or runaway source from holding a worker.
PULL_CONNECT_TIMEOUT = timedelta(seconds=env.int("PULL_CONNECT_TIMEOUT_SECONDS", default=10))
PULL_STATEMENT_TIMEOUT = timedelta(seconds=env.int("PULL_STATEMENT_TIMEOUT_SECONDS", default=30))
PULL_HTTP_READ_TIMEOUT = timedelta(seconds=env.int("PULL_HTTP_READ_TIMEOUT_SECONDS", default=30))
PULL_HTTP_MAX_BYTES = env.int("PULL_HTTP_MAX_BYTES", default=20 * 1024 * 1024)
PULL_MAX_ROWS = env.int("PULL_MAX_ROWS", default=100_000)  # per pull; more is a query missing its since
# An HTTP source's URL is an organization admin's choice, like a webhook's: addresses inside our own network are
# refused unless allowed here (governance.outbound). SQL sources connect where the operator's environment says.
PULL_ALLOW_PRIVATE_NETWORKS = env.bool("PULL_ALLOW_PRIVATE_NETWORKS", default=False)
# The environment variables an operator grants to an organization's sources, as "slug:NAME" ("acme:WAREHOUSE_DSN,
# ..."). All organizations share the workers' environment, so none is readable unless granted here; tenants keep
# their credentials as organization secrets (governance.secrets) instead.
PULL_ENV_GRANTS = set(env.list("PULL_ENV_GRANTS", default=[]))
# The directories whose SQLite and DuckDB files an organization's sql sources may open, as "slug:/path" (none by
# default): a file URL is a tenant's choice, and the workers' disks hold other tenants' files and Steerco's own.
PULL_FILE_GRANTS = set(env.list("PULL_FILE_GRANTS", default=[]))
# Steerco's own settings, never readable by a source even if granted by mistake.
PULL_ENV_RESERVED = {
    "DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "SECRET_KEY",
    "API_TOKEN_KEY",
    "WEBHOOK_KEY",
    "SECRETS_KEYS",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "EMAIL_URL",
}

# Prometheus metrics (docs/operations.md): scrapers send this bearer token; unset, /metrics is off. METRICS_PORT
# makes each worker serve Steerco's gauges (backlog, sweeps, deliveries) on that port.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_PORT = env.int("METRICS_PORT", default=0)

# Error reports to Sentry, tenants' data scrubbed (config.operations.errors); unset, nothing is sent.
SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    from config.operations.errors import init_sentry

    init_sentry(SENTRY_DSN, environment=env("SENTRY_ENVIRONMENT", default="production"))

# A worker older than this is considered down on the health page.
HEARTBEAT_STALE_AFTER = timedelta(minutes=3)

# LOG_FORMAT=json: one JSON object per line, one line per request and per task (config.operations.logs); Compose and
# the cluster deployment set it. Celery then leaves the root logger to these settings and its own per-task lines out.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation_id": {"()": "django_guid.log_filters.CorrelationId"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"},
        "json": {"()": "config.operations.logs.json_formatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["correlation_id"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_guid": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # its INFO lines repeat what the audit log records
        "httpx": {"level": "WARNING"},  # one INFO line per webhook delivery or pull; their own rows record them
        # The request line replaces runserver's; the task line Celery's "received" and "succeeded" ones.
        **(
            {name: {"level": "WARNING"} for name in ("django.server", "celery.app.trace", "celery.worker.strategy")}
            if LOG_FORMAT == "json"
            else {}
        ),
    },
}

# Enterprise identity (docs/identity.md). Break-glass admins (emails) may still log in with a password where an
# organization requires single sign-on, for when its identity provider is down; keep the list short.
SSO_BREAK_GLASS_EMAILS = [e.strip().lower() for e in env.list("SSO_BREAK_GLASS_EMAILS", default=[])]
SSO_CLOCK_SKEW_SECONDS = env.int("SSO_CLOCK_SKEW_SECONDS", default=60)
SIGNUP_VERIFICATION_TTL = timedelta(hours=env.int("SIGNUP_VERIFICATION_HOURS", default=48))
SIGNUP_EMAIL_LIMIT = env.int("SIGNUP_EMAIL_LIMIT", default=3)  # signup emails per address per PASSWORD_RESET_WINDOW
OTP_TOTP_ISSUER = "Steerco"
