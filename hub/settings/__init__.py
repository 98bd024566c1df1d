"""Django settings for the hub, read from the environment in this one place.

Unset URLs select embedded mode: SQLite under var/, the in-memory channel layer
and the embedded MQTT broker. Setting DATABASE_URL, REDIS_URL and MQTT_URL
selects production mode, where SECRET_KEY has no default.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from hub.settings.environment import (
    SettingError,
    env_bool,
    env_choice,
    env_list,
    env_number,
    env_str,
    env_url,
)

_RATE = re.compile(r"[0-9]{1,9}/(s|sec|second|m|min|minute|h|hour|d|day)")


def env_rate(name: str, default: str) -> str | None:
    """Return a DRF throttle rate like 1200/min from the environment; "off" gives None."""
    value = (env_str(name, default) or default).strip()
    if value.lower() == "off":
        return None
    if not _RATE.fullmatch(value):
        raise SettingError(
            name, f"expected a rate like 60/min (per s, min, hour or day) or off, got {value!r}"
        )
    return value


VAR_DIR = Path(env_str("HUB_VAR_DIR", "var") or "var").resolve()

DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "pgsql", "postgis", "sqlite"))
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
MQTT_URL = env_url("MQTT_URL", ("mqtt", "mqtts"))
EMBEDDED = DATABASE_URL is None and REDIS_URL is None and MQTT_URL is None
# The Mosquitto dynamic-security admin account (mqtt://user:pass@host:port). Set, the hub
# manages the broker's accounts: one client per device, and the bridge's (README "Security").
MQTT_ADMIN_URL = env_url("MQTT_ADMIN_URL", ("mqtt", "mqtts"))
if MQTT_ADMIN_URL is not None:
    if MQTT_URL is None:
        raise SettingError("MQTT_ADMIN_URL", "needs MQTT_URL: the embedded broker checks devices")
    if not urlsplit(MQTT_ADMIN_URL).username:
        raise SettingError("MQTT_ADMIN_URL", "give the admin account as mqtt://user:pass@host")
    if not (urlsplit(MQTT_URL).username and urlsplit(MQTT_URL).password):
        raise SettingError(
            "MQTT_URL",
            "give the bridge's account (mqtt://user:pass@host) when MQTT_ADMIN_URL is set",
        )


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key is not None:
        return key
    if not EMBEDDED:
        raise SettingError("SECRET_KEY", "required when DATABASE_URL, REDIS_URL or MQTT_URL is set")
    # Embedded mode keeps one generated key so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS (README "Security"). HUB_HTTPS: browsers reach the hub over HTTPS only.
# HUB_PROXY_SSL_HEADER: the header a TLS-terminating proxy sets to "https" (and strips
# from clients), e.g. X-Forwarded-Proto; without a proxy leave it unset.
if _proxy_header := env_str("HUB_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.strip().upper().replace("-", "_"), "https")
if env_bool("HUB_HTTPS", default=False):
    SECURE_SSL_REDIRECT = True
    # Probes inside the network speak plain HTTP to the server itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_number("HUB_HSTS_SECONDS", 31_536_000, int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HUB_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("HUB_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Joining the browsers' preload list is a separate, deliberate step (hstspreload.org).
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hub",
    "devices",
    "telemetry",
]

MIDDLEWARE = [
    # First, so it times and counts every answer, the other middleware's included.
    "hub.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
ASGI_APPLICATION = "hub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if DATABASE_URL is None or DATABASE_URL.startswith("sqlite"):
    _sqlite_path = VAR_DIR / "hub.sqlite3"
    if DATABASE_URL is not None:
        _sqlite_path = Path(urlsplit(DATABASE_URL).path.lstrip("/") or _sqlite_path)
    _sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_sqlite_path),
            "OPTIONS": {
                # WAL lets readers run while the ingest consumer writes.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # One process keeps its connection: no reconnect per ingest batch.
            "CONN_MAX_AGE": None,
        }
    }
else:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    # Django's psycopg pool, not per-thread persistent connections: under ASGI each
    # request runs on a thread of its own, which would open a connection apiece.
    # Checked on checkout, so connections cut by a database restart are replaced.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_number("HUB_DB_POOL_SIZE", 10, int, minimum=1),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL is None:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis' layer with its sharding fixed (hub/channel_layer.py).
            "BACKEND": "hub.channel_layer.RedisChannelLayer",
            "CONFIG": {
                # Several comma-separated URLs shard channels and groups over hosts.
                "hosts": [url.strip() for url in REDIS_URL.split(",")],
                "capacity": env_number("HUB_CHANNEL_CAPACITY", 100, int, minimum=1),
                "expiry": 60,
                # Lets several hubs (or test runs) share one Redis without meeting.
                "prefix": env_str("HUB_CHANNEL_PREFIX", "asgi"),
            },
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Messages (the admin shows a new device token once) live in the session, not a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve the apps' static files straight from their folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
# uPlot, installed from the npm registry by `make` (package.json), served as static/uplot/….
STATICFILES_DIRS = [
    ("uplot", Path(__file__).resolve().parents[2] / "node_modules" / "uplot" / "dist"),
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # orjson: a body nested 10 000 deep or holding lone surrogates is a 400, not a 500.
    "DEFAULT_PARSER_CLASSES": [
        "hub.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

# Hub tunables, each overridable as HUB_<NAME>; read them through hub.conf.hub_settings.
HUB = {
    # Codec limits (CONTRACT §2).
    "MAX_PAYLOAD_BYTES": env_number("HUB_MAX_PAYLOAD_BYTES", 65536, int, minimum=1),
    "MAX_READINGS": env_number("HUB_MAX_READINGS", 1000, int, minimum=1),
    "MAX_FUTURE_SECONDS": env_number("HUB_MAX_FUTURE_SECONDS", 300, int),
    "MAX_STRING_LENGTH": env_number("HUB_MAX_STRING_LENGTH", 256, int, minimum=1),
    "RAW_RETENTION_DAYS": env_number("HUB_RAW_RETENTION_DAYS", 30, int, minimum=1),
    # `hub prune` deletes 1-minute rollups after this many days; hourly rollups stay.
    "ROLLUP_1M_RETENTION_DAYS": env_number("HUB_ROLLUP_1M_RETENTION_DAYS", 365, int, minimum=1),
    # REST requests per user (per address when anonymous), and token requests per address:
    # N/s, N/min, N/hour or N/day, or "off".
    "THROTTLE_USER": env_rate("HUB_THROTTLE_USER", "1200/min"),
    "THROTTLE_ANON": env_rate("HUB_THROTTLE_ANON", "120/min"),
    "THROTTLE_TOKEN": env_rate("HUB_THROTTLE_TOKEN", "10/min"),
    # A device without a status topic that is silent this long is marked offline.
    "OFFLINE_AFTER": env_number("HUB_OFFLINE_AFTER", 120, int, minimum=1),
    # Bridge batching: a batch leaves at this many readings or after this delay.
    "BATCH_MAX_READINGS": env_number("HUB_BATCH_MAX_READINGS", 5000, int, minimum=1),
    "BATCH_MAX_DELAY_MS": env_number("HUB_BATCH_MAX_DELAY_MS", 50, int, minimum=1),
    # Batches a bridge has sent and not yet seen stored; the next one grows meanwhile.
    "BATCHES_IN_FLIGHT": env_number("HUB_BATCHES_IN_FLIGHT", 4, int, minimum=1),
    # A batch not confirmed stored within this many seconds is sent again.
    "INGEST_TIMEOUT_SECONDS": env_number("HUB_INGEST_TIMEOUT_SECONDS", 30.0, float, 0.1),
    # MQTT messages received but not yet acknowledged (the MQTT 5 receive maximum).
    "MQTT_RECEIVE_MAXIMUM": env_number("HUB_MQTT_RECEIVE_MAXIMUM", 10000, int, minimum=1),
    "MQTT_CLIENT_ID": env_str("HUB_MQTT_CLIENT_ID", "hub-bridge"),
    # How long the broker keeps the bridge's session (and its queued messages) while it is away.
    "MQTT_SESSION_EXPIRY_SECONDS": env_number(
        "HUB_MQTT_SESSION_EXPIRY_SECONDS", 7 * 86_400, int, minimum=0
    ),
    # Several bridges with one group name split the devices' messages between them.
    "MQTT_SHARED_GROUP": env_str("HUB_MQTT_SHARED_GROUP"),
    # 5 (MQTT 5, bounds unacknowledged messages) or 4 (MQTT 3.1.1) towards MQTT_URL's broker.
    "MQTT_PROTOCOL": env_number("HUB_MQTT_PROTOCOL", 5, int, minimum=4),
    # Embedded mode: the port of the in-process MQTT broker.
    "MQTT_PORT": env_number("HUB_MQTT_PORT", 1884, int, minimum=0),
    "WS_MAX_MESSAGE_BYTES": env_number("HUB_WS_MAX_MESSAGE_BYTES", 65536, int, minimum=1),
    # Per socket: frames per second (bursts as large), and readings held for a slow
    # client before the oldest are dropped.
    # 1 000: a fleet page on "*" with 100 devices at 10 msg/s gets every message as it
    # comes (bench fan-out row: p99 594 ms at 200, 138 ms at 1 000); bytes bound floods.
    "WS_MAX_FRAMES_PER_SECOND": env_number("HUB_WS_MAX_FRAMES_PER_SECOND", 1000, int, minimum=1),
    "WS_MAX_BYTES_PER_SECOND": env_number(
        "HUB_WS_MAX_BYTES_PER_SECOND", 512 * 1024, int, minimum=1024
    ),
    # `hub serve`'s WebSocket pings (for `daphne`, pass --ping-interval/--ping-timeout).
    "WS_PING_INTERVAL_SECONDS": env_number("HUB_WS_PING_INTERVAL_SECONDS", 10, int, minimum=1),
    "WS_PING_TIMEOUT_SECONDS": env_number("HUB_WS_PING_TIMEOUT_SECONDS", 20, int, minimum=1),
    "WS_OUTBOX_READINGS": env_number("HUB_WS_OUTBOX_READINGS", 10_000, int, minimum=1),
}

# Throttle counters live in Django's default cache: in memory, per process.
REST_FRAMEWORK |= {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": HUB["THROTTLE_USER"],
        "anon": HUB["THROTTLE_ANON"],
        "token": HUB["THROTTLE_TOKEN"],
    },
}

# The OpenAPI document at /api/schema/ and its docs at /api/docs/, served from
# drf-spectacular-sidecar's static files (no internet access needed).
SPECTACULAR_SETTINGS = {
    "TITLE": "Telemetry hub API",
    "DESCRIPTION": (
        "Devices, their latest values, raw readings and time-bucketed series. "
        "Authenticate with `Authorization: Token <key>` (POST /api/v1/auth/token/) "
        "or a session. Timestamps are RFC 3339 UTC; a user sees only their own devices."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Logs go to stderr: plain text lines, or one JSON object per line
# ({"time", "level", "logger", "message", …extra fields}) for a log collector.
LOG_FORMAT = env_choice("HUB_LOG_FORMAT", ("text", "json"), "text")
LOG_LEVEL = env_choice("HUB_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "hub.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "amqtt": {"level": "WARNING"},
        "transitions": {"level": "WARNING"},
    },
}
