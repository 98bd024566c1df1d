"""Settings for the test suite: the hub's own settings, pointed at the machine's PostgreSQL."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hub")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# No throttling in-process: one cache holds every test's requests; the throttle
# tests set their own rates.
os.environ.setdefault("HUB_THROTTLE_USER", "off")
os.environ.setdefault("HUB_THROTTLE_ANON", "off")
os.environ.setdefault("HUB_THROTTLE_TOKEN", "off")
os.environ.setdefault("HUB_THROTTLE_PROVISION", "off")
os.environ.setdefault("HUB_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test"))

from hub.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Close connections after each database_sync_to_async call, so no worker thread
# holds one open when the test database is dropped.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# In-process tests open and close connections themselves; a pool would keep one open
# and the test database could not be dropped. The hub's processes in e2e tests pool.
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
# One test database per pytest process, so parallel runs on one machine never meet.
DATABASES["default"]["TEST"] = {"NAME": f"test_hub_{os.getpid()}"}  # noqa: F405
