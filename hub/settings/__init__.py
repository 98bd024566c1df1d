"""Django settings for the hub, read from the environment in this one place.

Unset URLs select embedded mode: SQLite under var/, the in-memory channel layer
and the embedded MQTT broker. Setting DATABASE_URL, REDIS_URL and MQTT_URL
selects production mode, where SECRET_KEY has no default.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from hub.settings.environment import (
    SettingError,
    env_bool,
    env_choice,
    env_list,
    env_networks,
    env_number,
    env_str,
    env_url,
)
from hub.settings.redis import redis_hosts

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


def _package_dir(name: str) -> Path:
    """Return the folder a top-level package imports from (checkout or wheel), unimported."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImproperlyConfigured(f"the hub's {name!r} package is not importable")
    return Path(spec.origin).parent


VAR_DIR = Path(env_str("HUB_VAR_DIR", "var") or "var").resolve()


def _writable_dir(path: Path, name: str) -> Path:
    """Create a folder the hub writes to, or stop with one line naming the setting."""
    if path.exists() and not path.is_dir():
        raise SettingError(name, f"{path} is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingError(name, f"cannot create {path}: {error.strerror or error}") from None
    return path


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
    path = _writable_dir(VAR_DIR, "HUB_VAR_DIR") / "secret_key"
    try:
        if not path.exists():
            path.write_text(secrets.token_urlsafe(50))
            path.chmod(0o600)
        return path.read_text().strip()
    except OSError as error:
        raise SettingError("HUB_VAR_DIR", f"cannot write {path}: {error.strerror}") from None


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
    "csp",
    "hub",
    "devices",
    "telemetry",
    "alarms",
    "apikeys",
    "provisioning",
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
    # A device change the managed broker did not take: 503, not 500 (the admin).
    "devices.middleware.BrokerUnavailableMiddleware",
    # Content-Security-Policy (django-csp) on every response: CONTENT_SECURITY_POLICY below.
    "csp.middleware.CSPMiddleware",
]

# Scripts, styles, images and connections from the hub only, no inline script or style:
# the pages, the admin and the API docs load everything from /static/ (README "Security").
# data: images: Swagger UI's icons (the pages' icon is a static SVG). 'self' covers the
# page's own WebSocket (CSP 3). Framing is refused, as X-Frame-Options DENY says too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

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
        # sqlite:///relative.db or sqlite:////absolute/path.db, as dj-database-url reads them.
        _sqlite_path = Path(urlsplit(DATABASE_URL).path[1:] or _sqlite_path)
    _writable_dir(_sqlite_path.parent, "DATABASE_URL" if DATABASE_URL else "HUB_VAR_DIR")
    DATABASES: dict[str, dict[str, Any]] = {
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
    # DBConfig, a TypedDict, is read-only to mypy; Django's own type is a plain dict.
    DATABASES = {"default": cast("dict[str, Any]", dj_database_url.parse(DATABASE_URL))}
    if not DATABASES["default"].get("NAME"):
        raise SettingError("DATABASE_URL", "no database name (postgres://user:pass@host:5432/NAME)")
    # libpq waits 130 s for an unreachable host by default; ?connect_timeout= in the URL wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 10)
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
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis' layer with its sharding fixed (hub/channel_layer.py).
            "BACKEND": "hub.channel_layer.RedisChannelLayer",
            "CONFIG": {
                # Several comma-separated URLs shard channels and groups over hosts. Anyone
                # who can write to Redis can forge batches and commands: give it a password
                # (redis://:password@host) and keep it private, or use TLS (rediss://) with
                # HUB_REDIS_CA_FILE, the PEM file of the CA that signed Redis' certificate.
                "hosts": redis_hosts(REDIS_URL, env_str("HUB_REDIS_CA_FILE")),
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
_writable_dir(STATIC_ROOT, "HUB_VAR_DIR")
# Serve the apps' static files straight from their folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
# uPlot, from the npm registry as package-lock.json pins it, vendored into the telemetry
# package (scripts/assets.sh; wheels and sdists carry it), served as static/uplot/….
# The check telemetry.E001 stops `hub serve`, `hub check` and `migrate` when it is missing.
STATICFILES_DIRS = [("uplot", _package_dir("telemetry") / "vendor" / "uplot")]

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.auth.TokenAuthentication",
        # Authorization: Bearer <API key>; refuses a read key's unsafe methods itself.
        "apikeys.auth.ApiKeyAuthentication",
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

# Hub tunables, each overridable as HUB_<NAME>; read them through core.conf.hub_settings.
HUB = {
    # Codec limits (CONTRACT §2).
    "MAX_PAYLOAD_BYTES": env_number("HUB_MAX_PAYLOAD_BYTES", 65536, int, minimum=1),
    "MAX_READINGS": env_number("HUB_MAX_READINGS", 1000, int, minimum=1),
    "MAX_FUTURE_SECONDS": env_number("HUB_MAX_FUTURE_SECONDS", 300, int),
    "MAX_STRING_LENGTH": env_number("HUB_MAX_STRING_LENGTH", 256, int, minimum=1),
    "RAW_RETENTION_DAYS": env_number("HUB_RAW_RETENTION_DAYS", 30, int, minimum=1),
    # Metrics one device may have; readings of a new metric past it are refused as
    # too_many_metrics (on devices/{uid}/errors), its existing metrics keep working.
    "MAX_METRICS_PER_DEVICE": env_number("HUB_MAX_METRICS_PER_DEVICE", 200, int, minimum=1),
    # `hub prune` deletes 1-minute rollups after this many days; hourly rollups stay.
    "ROLLUP_1M_RETENTION_DAYS": env_number("HUB_ROLLUP_1M_RETENTION_DAYS", 365, int, minimum=1),
    # REST requests per user (per address when anonymous), and token requests per address:
    # N/s, N/min, N/hour or N/day, or "off".
    "THROTTLE_USER": env_rate("HUB_THROTTLE_USER", "1200/min"),
    "THROTTLE_ANON": env_rate("HUB_THROTTLE_ANON", "120/min"),
    # Password guesses per address: the token endpoint, the login form and the admin
    # login share this one budget.
    "THROTTLE_TOKEN": env_rate("HUB_THROTTLE_TOKEN", "10/min"),
    # The bridge logs the first rejection of each reason, then one line per reason per
    # interval with the count held back (all are counted in /metrics and reported to devices).
    "REJECTION_LOG_INTERVAL_SECONDS": env_number(
        "HUB_REJECTION_LOG_INTERVAL_SECONDS", 10.0, float, minimum=0.1
    ),
    # Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For is
    # believed: behind one, throttles count the right-most forwarded address that is not
    # itself a trusted proxy. Default none: the header is ignored and the peer counted.
    "TRUSTED_PROXIES": env_networks("HUB_TRUSTED_PROXIES"),
    # Buckets one series request may return, all its metrics together (a 400 naming
    # it past that; `points=` stays within it). 10 000 buckets are about 1.4 MB of JSON;
    # at least 50, the most metrics one request may name.
    "MAX_SERIES_BUCKETS": env_number("HUB_MAX_SERIES_BUCKETS", 10_000, int, minimum=50),
    # History computations (series requests, chunks of a CSV export) running at once in
    # one web process; the rest wait their turn (a series request 30 s, then a 503 naming
    # it). They are CPU-bound Python: fewer at once keeps /healthz and the rest quick.
    "HISTORY_CONCURRENCY": env_number("HUB_HISTORY_CONCURRENCY", 2, int, minimum=1),
    # A device without a status topic that is silent this long is marked offline.
    "OFFLINE_AFTER": env_number("HUB_OFFLINE_AFTER", 120, int, minimum=1),
    # Bridge batching: a batch leaves at this many readings or after this delay. Under
    # load, larger batches share each transaction's fixed work among more readings:
    # at 10 000 rather than 5 000 the hub row took ~9 % less CPU per reading.
    "BATCH_MAX_READINGS": env_number("HUB_BATCH_MAX_READINGS", 10_000, int, minimum=1),
    "BATCH_MAX_DELAY_MS": env_number("HUB_BATCH_MAX_DELAY_MS", 50, int, minimum=1),
    # Batches a bridge has sent and not yet seen stored; the next one grows meanwhile.
    "BATCHES_IN_FLIGHT": env_number("HUB_BATCHES_IN_FLIGHT", 4, int, minimum=1),
    # Python's collector in the hub's long-running processes (hub/heap.py): a young
    # pass after this many container objects are made and not freed (Python's own 700).
    "GC_YOUNG_THRESHOLD": env_number("HUB_GC_YOUNG_THRESHOLD", 50_000, int, minimum=1),
    # Batches one ingest worker stores at once, each in its own transaction on its own
    # connection (PostgreSQL; SQLite stores one at a time): one writes its readings while
    # the next stages its own, and they write in the order the worker took them.
    "INGEST_BATCHES_AT_ONCE": env_number("HUB_INGEST_BATCHES_AT_ONCE", 2, int, minimum=1),
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
    # Embedded broker limits (CONTRACT §9; a managed Mosquitto has its own configuration).
    # Open MQTT sockets at most (and at most half the files the process may open); past
    # it a client gets CONNACK "server unavailable" and is disconnected.
    "MQTT_MAX_CONNECTIONS": env_number("HUB_MQTT_MAX_CONNECTIONS", 5000, int, minimum=1),
    # A socket that has not sent a whole CONNECT within this time is closed.
    "MQTT_CONNECT_TIMEOUT_SECONDS": env_number(
        "HUB_MQTT_CONNECT_TIMEOUT_SECONDS", 10.0, float, minimum=0.1
    ),
    # Largest MQTT packet, fixed header included (deploy/mosquitto's max_packet_size): a
    # larger one closes the connection before its body is read.
    "MQTT_MAX_PACKET_BYTES": env_number("HUB_MQTT_MAX_PACKET_BYTES", 1_048_576, int, minimum=1024),
    # Topic filters one device may hold; past it SUBACK answers failure (0x80).
    "MQTT_MAX_SUBSCRIPTIONS": env_number("HUB_MQTT_MAX_SUBSCRIPTIONS", 32, int, minimum=1),
    # Messages on their way to one device (unwritten or unacknowledged) and their bytes;
    # past either, more for it are dropped (a device that stops reading holds no more).
    "MQTT_MAX_QUEUED_MESSAGES": env_number("HUB_MQTT_MAX_QUEUED_MESSAGES", 1000, int, minimum=1),
    "MQTT_MAX_QUEUED_BYTES": env_number("HUB_MQTT_MAX_QUEUED_BYTES", 4 << 20, int, minimum=1024),
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
    # Open to anyone (true) or closed: /metrics to staff users, /api/schema/ and
    # /api/docs/ to signed-in users (hub/public.py).
    "PUBLIC_METRICS": env_bool("HUB_PUBLIC_METRICS", default=True),
    "PUBLIC_SCHEMA": env_bool("HUB_PUBLIC_SCHEMA", default=True),
    # Alarms (CONTRACT §6). Rules and webhooks one user may have; more is a 400 naming the limit.
    "ALARM_RULES_PER_USER": env_number("HUB_ALARM_RULES_PER_USER", 1000, int, minimum=1),
    "WEBHOOKS_PER_USER": env_number("HUB_WEBHOOKS_PER_USER", 10, int, minimum=1),
    # Provisioning (CONTRACT §7): live (unrevoked) keys one user may have; more is a 400.
    "PROVISIONING_KEYS_PER_USER": env_number("HUB_PROVISIONING_KEYS_PER_USER", 20, int, minimum=1),
    # Claims (POST /api/v1/provision/) per client address, right secret or not: N/s, N/min,
    # N/hour or N/day, or "off".
    "THROTTLE_PROVISION": env_rate("HUB_THROTTLE_PROVISION", "30/min"),
    # Webhook URLs may reach loopback, private, link-local and other non-global addresses
    # (off: refused when saved, and checked again when sent). For tests and closed networks.
    "WEBHOOK_ALLOW_PRIVATE": env_bool("HUB_WEBHOOK_ALLOW_PRIVATE", default=False),
    # Seconds one webhook POST may take (connect, send, answer) before it counts as failed.
    "WEBHOOK_TIMEOUT_SECONDS": env_number("HUB_WEBHOOK_TIMEOUT_SECONDS", 10.0, float, 0.1),
    # Attempts per delivery (backoff 1 s doubling to 15 min between them, ~2 h in all);
    # then it is marked failed and the alarm's later changes go on.
    "WEBHOOK_MAX_ATTEMPTS": env_number("HUB_WEBHOOK_MAX_ATTEMPTS", 15, int, minimum=1),
    # Open sockets per user in one web process (closed with 4429 past it); each holds up
    # to WS_OUTBOX_READINGS readings for a slow client.
    "WS_MAX_SOCKETS_PER_USER": env_number("HUB_WS_MAX_SOCKETS_PER_USER", 20, int, minimum=1),
    # Device uids a `subscribed` frame lists; past it the frame says how many more.
    "WS_MAX_LISTED_DEVICES": env_number("HUB_WS_MAX_LISTED_DEVICES", 1000, int, minimum=1),
    # Device attributes (CONTRACT §7): keys and bytes of JSON each side (desired, reported)
    # may hold after a merge; a patch past either is a 400 naming it (REST), an error frame
    # (WebSocket) or an `attributes_too_large` / `too_many_attributes` rejection (MQTT).
    "ATTRIBUTES_MAX_KEYS": env_number("HUB_ATTRIBUTES_MAX_KEYS", 100, int, minimum=1),
    "ATTRIBUTES_MAX_BYTES": env_number("HUB_ATTRIBUTES_MAX_BYTES", 16_384, int, minimum=256),
    # HTTP ingest (POST /api/v1/devices/{uid}/telemetry/): the largest body and the most
    # readings in one (a 400 naming the limit past either), how long a request waits for
    # the ingest worker to store its batch (then 503; retrying is safe with ts), and the
    # requests per device (429 past it; N/s, N/min, N/hour or N/day, or "off").
    "HTTP_INGEST_MAX_BYTES": env_number("HUB_HTTP_INGEST_MAX_BYTES", 1 << 20, int, minimum=1024),
    "HTTP_INGEST_MAX_READINGS": env_number("HUB_HTTP_INGEST_MAX_READINGS", 10_000, int, minimum=1),
    "HTTP_INGEST_TIMEOUT_SECONDS": env_number(
        "HUB_HTTP_INGEST_TIMEOUT_SECONDS", 30.0, float, minimum=0.1
    ),
    "THROTTLE_DEVICE_INGEST": env_rate("HUB_THROTTLE_DEVICE_INGEST", "600/min"),
    # `hub serve --simulate`: what goes wrong with some simulated devices, on a cycle, so the
    # demo's alarm rules fire and clear (firmware-sim --fault specs, comma-separated; "off":
    # none). By default one device drifts hot and one goes silent for 20 s in every 60 s.
    "DEMO_FAULTS": env_str("HUB_DEMO_FAULTS", "drift-high:1,silent:1"),
    # `hub serve --simulate`: days of history the simulated devices first send (through
    # MQTT, as readings with their device time), so the 24 h and 7 d charts have data at
    # once; only while the demo's devices have no readings yet. 0: none.
    "DEMO_HISTORY_DAYS": env_number("HUB_DEMO_HISTORY_DAYS", 7.0, float, minimum=0),
    # API keys (CONTRACT §8): keys one user may have, revoked ones included until deleted
    # (a 400 naming the limit past it), and devices one key may be limited to.
    "API_KEYS_PER_USER": env_number("HUB_API_KEYS_PER_USER", 100, int, minimum=1),
    "API_KEY_MAX_DEVICES": env_number("HUB_API_KEY_MAX_DEVICES", 1000, int, minimum=1),
    # An open WebSocket authenticated by a key checks it this often: a revoked or expired
    # key's socket is closed (4401) within this many seconds, its device list refreshed.
    "API_KEY_RECHECK_SECONDS": env_number("HUB_API_KEY_RECHECK_SECONDS", 10.0, float, 0.1),
}

# Throttle counters live in Django's default cache: in memory, per process. Each counts
# the client's real address (core.throttling.client_address).
REST_FRAMEWORK |= {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.UserRateThrottle",
        "core.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": HUB["THROTTLE_USER"],
        "anon": HUB["THROTTLE_ANON"],
        "token": HUB["THROTTLE_TOKEN"],
        # Commands per user, over REST and WebSocket together: the REST throttle's rate.
        "commands": HUB["THROTTLE_USER"],
        # HTTP ingest requests per device (HUB_THROTTLE_DEVICE_INGEST).
        "device_ingest": HUB["THROTTLE_DEVICE_INGEST"],
        "provision": HUB["THROTTLE_PROVISION"],
    },
}

# The OpenAPI document at /api/schema/ and its docs at /api/docs/, served from
# drf-spectacular-sidecar's static files (no internet access needed).
SPECTACULAR_SETTINGS = {
    "TITLE": "Telemetry hub API",
    "DESCRIPTION": (
        "Devices, their latest values, raw readings and time-bucketed series. "
        "Authenticate with `Authorization: Token <key>` (POST /api/v1/auth/token/), "
        "`Authorization: Bearer <API key>` (/api/v1/api-keys/) or a session. "
        "Timestamps are RFC 3339 UTC; a user sees only their own devices."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # HTTP ingest is a plain async view, which drf-spectacular cannot see: described here.
    "PREPROCESSING_HOOKS": ["telemetry.openapi.http_ingest_endpoint"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Every operation with a body can answer 415 (no or unreadable Content-Type).
        "hub.openapi.unsupported_media_type",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Alarms have a `state` too (active/cleared); an API key's is named apart.
    "ENUM_NAME_OVERRIDES": {"ApiKeyStateEnum": ["active", "revoked", "expired"]},
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
    "filters": {"pool_connect_errors": {"()": "hub.logs.PoolConnectErrors"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "psycopg.pool": {"filters": ["pool_connect_errors"]},
        "daphne": {"level": "WARNING"},
        "amqtt": {"level": "WARNING"},
        "transitions": {"level": "WARNING"},
    },
}
