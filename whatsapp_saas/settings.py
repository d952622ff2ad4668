"""Settings for the WhatsApp SaaS.

Every value comes from the environment through django-environ, so one settings
module serves development, tests and production. With no variables at all the
product runs embedded: SQLite, Celery tasks run eagerly in-process, and the
gateway is expected on 127.0.0.1:3000 with its `sim` engine.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def _env_raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or not value.strip() else value.strip()


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean word; anything unrecognised stops the start."""
    value = _env_raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE_WORDS:
        return True
    if value.lower() in _FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean; use true or false (also 1/0, "
        "yes/no, on/off)."
    )


def _env_number(name: str, default, parse, is_valid, expected: str):
    value = _env_raw(name)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or not is_valid(number):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not valid; set it to {expected}."
        )
    return number


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """Read a whole number of at least `minimum` (1 unless given)."""
    expected = (
        "a positive whole number"
        if minimum == 1
        else f"a whole number of at least {minimum}"
    )
    return _env_number(name, default, int, lambda n: n >= minimum, expected)


def env_float(name: str, default: float) -> float:
    """Read a number above 0, such as 10 or 2.5."""
    return _env_number(
        name, default, float, lambda n: n > 0, "a positive number such as 10 or 2.5"
    )


DEBUG = env_bool("DEBUG", default=True)

DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    # Before django.contrib.auth, so that its `changepassword` replaces
    # Django's.
    "accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "sessions_wa",
    "messaging",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    # After the language is chosen, before anything reads the body.
    "whatsapp_saas.middleware.LengthRequiredMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "whatsapp_saas.urls"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

WSGI_APPLICATION = "whatsapp_saas.wsgi.application"
ASGI_APPLICATION = "whatsapp_saas.asgi.application"

try:
    with warnings.catch_warnings():
        # An unknown scheme only warns; the check below names the variable.
        warnings.simplefilter("ignore")
        DATABASES = {
            "default": env.db_url(
                "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
            )
        }
except ValueError as error:
    raise ImproperlyConfigured(
        f"DATABASE_URL is not a valid database URL ({error}); use a URL such as "
        "postgres://user:password@host:5432/name or sqlite:////path/db.sqlite3."
    ) from None
if "." not in DATABASES["default"].get("ENGINE", ""):
    # Only the scheme is quoted: the rest of the URL may hold a password.
    _scheme = os.environ.get("DATABASE_URL", "").partition("://")
    raise ImproperlyConfigured(
        (
            f"DATABASE_URL has the unknown scheme {_scheme[0][:20]!r}"
            if _scheme[1]
            else "DATABASE_URL has no scheme (such as postgres://)"
        )
        + "; use a URL such as postgres://user:password@host:5432/name or "
        "sqlite:////path/db.sqlite3."
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# The send API's statement and the send drain's are prepared on each
# connection (see `prepared_cursor`). Turn this off behind PgBouncer in
# transaction mode before version 1.22, or without max_prepared_statements.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", default=True)
DATABASES["default"]["CONN_MAX_AGE"] = env_int(
    "DATABASE_CONN_MAX_AGE", default=60, minimum=0
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; a busy timeout lets the eager-task path and
    # the callback view wait for each other instead of failing at once.
    sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    sqlite_options["timeout"] = 20
    # A transaction that reads first and writes later cannot wait on the busy
    # timeout: SQLite fails its upgrade to a write lock at once with
    # "database is locked". Taking the write lock at BEGIN makes every
    # writer queue on the timeout instead.
    sqlite_options["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

_PASSWORD_VALIDATION = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_PASSWORD_VALIDATION}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_PASSWORD_VALIDATION}.MinimumLengthValidator"},
    {"NAME": f"{_PASSWORD_VALIDATION}.CommonPasswordValidator"},
    {"NAME": f"{_PASSWORD_VALIDATION}.NumericPasswordValidator"},
]

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "sessions_wa:settings"
LOGOUT_REDIRECT_URL = "accounts:login"
# After this many failed log-ins in a row for one email address, each within
# LOGIN_LOCKOUT_MINUTES of the one before, the address is locked out for
# LOGIN_LOCKOUT_MINUTES (accounts.login_limits).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", default=15)

# The console backend prints each email, password reset links included, so
# with DEBUG off an unset EMAIL_BACKEND drops mail and logs only that it
# was not sent (accounts.mail).
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default=(
        "django.core.mail.backends.console.EmailBackend"
        if DEBUG
        else "accounts.mail.UnsentEmailBackend"
    ),
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@localhost")
# The SMTP backend's server, with Django's defaults.
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env_int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Callback batches hold at most 100 events; 1 MiB is far above a real batch
# and far below Django's default upload limit, so oversized bodies get a clear
# 413 from the callback view before the body is parsed.
WA_CALLBACK_MAX_BYTES = env_int("WA_CALLBACK_MAX_BYTES", default=1024 * 1024)

# Redis, Celery and the cache.
REDIS_URL = env.str("REDIS_URL", default="").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL={REDIS_URL.split('@')[-1][:60]!r} is not a Redis URL; use "
        "redis://host:6379/0, rediss:// for TLS or unix:///path/redis.sock."
    )

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", default=20)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", default=30)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redelivery of an unacknowledged task after a worker dies; it must stay
    # above the hard time limit so a slow task is not delivered twice.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", default=120),
    # Kombu's Redis transport scans for such tasks every
    # unacked_restore_interval (10 s) times this many rounds. With its
    # default of 10, a task came back up to 100 s after the timeout.
    "unacked_restore_throttle": 1,
}
CELERY_TIMEZONE = TIME_ZONE
# Celery's Django fix-up (celery/fixups/django.py in Celery 5.7) closes every
# database connection before and after each task unless this is set, so each
# task would open a new PostgreSQL connection. whatsapp_saas.celery closes
# broken or old connections around each task instead (by CONN_MAX_AGE, as
# Django does for requests), and the fix-up then closes them every 1000 tasks.
CELERY_DB_REUSE_MAX = 1000

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The Node gateway.
WA_GATEWAY_URL = env.str("WA_GATEWAY_URL", default="http://127.0.0.1:3000")
WA_GATEWAY_TIMEOUT = env_float("WA_GATEWAY_TIMEOUT", default=10.0)

DEVELOPMENT_GATEWAY_SECRET = "development-gateway-secret-change-me"
WA_GATEWAY_SECRETS = env.list("WA_GATEWAY_SECRET", default=[DEVELOPMENT_GATEWAY_SECRET])
WA_GATEWAY_SECRETS = [secret.strip() for secret in WA_GATEWAY_SECRETS if secret.strip()]
if not WA_GATEWAY_SECRETS:
    raise ImproperlyConfigured("WA_GATEWAY_SECRET must contain at least one secret.")
if not DEBUG and DEVELOPMENT_GATEWAY_SECRET in WA_GATEWAY_SECRETS:
    raise ImproperlyConfigured(
        "WA_GATEWAY_SECRET still contains the development value; set a random "
        "secret shared with the gateway when DEBUG is off."
    )

# Seconds a signed request may be away from this server's clock.
WA_SIGNATURE_MAX_AGE = 300

REST_FRAMEWORK = {
    # Token first: DRF takes the 401 challenge from the first class, so an
    # API call without credentials gets 401 with "WWW-Authenticate: Token"
    # instead of a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # UserIdIsCaller returns 400 `invalid_user_id` to a user_id that is not
    # the caller's, in the query string or the body of any endpoint, and
    # QueryParamsRead returns 400 to a query parameter the view does not read.
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "whatsapp_saas.permissions.UserIdIsCaller",
        "whatsapp_saas.permissions.QueryParamsRead",
    ],
    # DRF's parsers, except that a field given twice in a body gets 400.
    "DEFAULT_PARSER_CLASSES": [
        "whatsapp_saas.parsers.JSONParser",
        "whatsapp_saas.parsers.FormParser",
        "whatsapp_saas.parsers.MultiPartParser",
    ],
    # DRF's renderer choice, except that an unknown or empty `?format=` gets
    # 400.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": (
        "whatsapp_saas.negotiation.ContentNegotiation"
    ),
    "DEFAULT_PAGINATION_CLASS": "whatsapp_saas.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "whatsapp_saas.exceptions.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "WhatsApp SaaS API",
    "DESCRIPTION": "Each subscriber's own WhatsApp session, customers and messages.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc come from drf-spectacular-sidecar's static files,
    # so /api/docs/ works offline and with a pinned version.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").strip().upper()
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
if LOG_LEVEL not in LOG_LEVELS:
    raise ImproperlyConfigured(
        f"LOG_LEVEL={os.environ['LOG_LEVEL']!r} is not a log level; use one of "
        f"{', '.join(LOG_LEVELS)}."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Without Django's own console handler, so that each record prints
        # once, through the root's. Debug records stay out even at DEBUG.
        "django": {
            "handlers": ["mail_admins"],
            "level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL,
        },
        "django.db.backends": {"level": "WARNING"},
        "whatsapp_saas.security": {"level": "WARNING"},
    },
}

# Several gateway nodes: users are spread over them by rendezvous hashing on
# the user id (see sessions_wa.gateway.gateway_url_for_user).
WA_GATEWAY_URLS = env.list("WA_GATEWAY_URLS", default=[])

# WhatsApp sessions (sessions_wa): periodic repair and clean-up.
# Days a session that is not connected may stay unused before cleanup logs
# it out on the gateway (wiping its login) and deletes it.
WA_SESSION_MAX_IDLE_DAYS = env_int("WA_SESSION_MAX_IDLE_DAYS", default=30)
# Days gateway events stay in the event log; a redelivery older than this is
# no longer recognised by its event id.
WA_EVENT_LOG_RETENTION_DAYS = env_int("WA_EVENT_LOG_RETENTION_DAYS", default=30)
# Seconds a session must go without updates before reconcile compares it with
# the gateway, so it does not race a start that is still in flight.
WA_RECONCILE_GRACE_SECONDS = env_int(
    "WA_RECONCILE_GRACE_SECONDS", default=60, minimum=0
)

# Other apps add their own entries to the same dict, before or after these.
CELERY_BEAT_SCHEDULE = globals().get("CELERY_BEAT_SCHEDULE", {})
CELERY_BEAT_SCHEDULE["sessions-wa-reconcile"] = {
    "task": "sessions_wa.tasks.reconcile",
    "schedule": env_float("WA_RECONCILE_INTERVAL_SECONDS", default=60.0),
}
CELERY_BEAT_SCHEDULE["sessions-wa-cleanup"] = {
    "task": "sessions_wa.tasks.cleanup",
    "schedule": env_float("WA_CLEANUP_INTERVAL_SECONDS", default=3600.0),
}

# Messaging: outbound pacing, retries and recovery.
# Each WhatsApp session may send WA_SEND_BURST messages at once, then
# WA_SEND_RATE_PER_MINUTE a minute; faster sending risks a ban.
WA_SEND_RATE_PER_MINUTE = env_float("WA_SEND_RATE_PER_MINUTE", default=20.0)
WA_SEND_BURST = env_int("WA_SEND_BURST", default=5)
# Retries of a send after a timeout, connection error or 5xx from the gateway.
WA_SEND_MAX_RETRIES = env_int("WA_SEND_MAX_RETRIES", default=6, minimum=0)
# New messages go to the gateway in requests of at most this many; 1 sends
# each message alone.
WA_SEND_BATCH_SIZE = env_int("WA_SEND_BATCH_SIZE", default=20, minimum=1)
# Subscribers share this many drain tasks: user id modulo this number picks
# the drain, and one drain sends the new messages of all its subscribers.
# One drain batches best; more run in parallel on more worker processes.
WA_SEND_DRAIN_SHARDS = env_int("WA_SEND_DRAIN_SHARDS", default=1, minimum=1)
# Under load, the least time between the starts of two rounds of a drain, so
# that messages accepted meanwhile share the next gateway request. A round
# that finds a full batch goes on at once, and 0 turns the wait off.
WA_SEND_DRAIN_LINGER_MS = env_int("WA_SEND_DRAIN_LINGER_MS", default=50, minimum=0)
# How long a web process that found a shard's drain running trusts it to
# send the next messages too, and so skips the Redis check on their sends. A
# drain waits this long after it gives its key up before its last read of
# the queue. 0 checks Redis on every send.
WA_SEND_DRAIN_SEEN_MS = env_int("WA_SEND_DRAIN_SEEN_MS", default=500, minimum=0)
# Minutes a message may stay queued (or sending) before it is queued again.
# 0 requeues every queued message at each sweep, which tests use.
WA_SEND_STUCK_MINUTES = env_int("WA_SEND_STUCK_MINUTES", default=5, minimum=0)
# Days a receipt, edit or reaction waits for its message before it is dropped.
WA_PENDING_UPDATE_MAX_AGE_DAYS = env_int("WA_PENDING_UPDATE_MAX_AGE_DAYS", default=7)

CELERY_BEAT_SCHEDULE["messaging-requeue-stuck"] = {
    "task": "messaging.message_requeue_stuck",
    "schedule": env_float("WA_REQUEUE_INTERVAL_SECONDS", default=60.0),
}
CELERY_BEAT_SCHEDULE["messaging-pending-updates-purge"] = {
    "task": "messaging.pending_updates_purge",
    "schedule": 3600.0,
}
CELERY_BEAT_SCHEDULE["messaging-deleted-send-keys-purge"] = {
    "task": "messaging.deleted_send_keys_purge",
    "schedule": 3600.0,
}
