"""Deploy checks of the hub's own settings (`hub check --deploy`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def redis_authenticated_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Warn about a Redis host the hub reaches without credentials: anyone there can forge."""
    if settings.REDIS_URL is None:
        return []
    warnings: list[CheckMessage] = []
    for url in settings.REDIS_URL.split(","):
        parts = urlsplit(url.strip())
        client_certificate = "ssl_certfile" in parse_qs(parts.query)
        # A unix socket is guarded by its file's permissions.
        if parts.scheme != "unix" and not parts.password and not client_certificate:
            warnings.append(
                Warning(
                    f"REDIS_URL reaches {parts.hostname}:{parts.port or 6379} without a "
                    "password: whoever can reach that Redis can forge ingest batches and "
                    "device commands.",
                    hint="Require a password (redis-server --requirepass), put it in REDIS_URL "
                    "as redis://:password@host (rediss:// for TLS), and keep Redis on a "
                    "private network.",
                    id="hub.W001",
                )
            )
    return warnings
