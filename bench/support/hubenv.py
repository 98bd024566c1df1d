"""The hub's processes as the bench starts them: their environment, their health."""

from __future__ import annotations

import os
import urllib.request

HEALTH_TIMEOUT_S = 60.0
# Settings the bench owns; other HUB_* variables of the caller pass through (for tuning runs).
OWN_SETTINGS = ("HUB_CHANNEL_PREFIX", "HUB_MQTT_CLIENT_ID", "HUB_VAR_DIR")


def hub_env(**settings: str) -> dict[str, str]:
    """Return a production-mode environment for hub processes."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in OWN_SETTINGS
        and key not in {"DATABASE_URL", "REDIS_URL", "MQTT_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


# hub/settings' HUB_WS_MAX_SOCKETS_PER_USER default (tests/test_bench_rows.py keeps it equal).
SOCKETS_PER_USER_DEFAULT = 20


def socket_cap(env: dict[str, str], sockets: int) -> None:
    """Let one user open the row's `sockets` WebSockets, unless the caller set the cap.

    A row's sockets all belong to its one user; past the per-user cap (per web
    process) the hub closes them with 4429. Never below the hub's default.
    """
    env.setdefault("HUB_WS_MAX_SOCKETS_PER_USER", str(max(sockets, SOCKETS_PER_USER_DEFAULT)))


def passed_through_settings() -> dict[str, str]:
    """Return the caller's HUB_* variables that reach the hub's processes."""
    return {k: v for k, v in os.environ.items() if k.startswith("HUB_") and k not in OWN_SETTINGS}


def healthy(port: int) -> bool:
    """Return whether Daphne answers /healthz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return bool(response.status == 200)
    except OSError:
        return False
