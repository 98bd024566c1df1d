"""One accessor for the hub's tunables (the HUB dict in settings)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


class HubSettings:
    """Attribute access to settings.HUB, read at access time so tests can override."""

    def __getattr__(self, name: str) -> Any:
        try:
            return settings.HUB[name]
        except KeyError:
            raise AttributeError(f"no hub setting {name!r}") from None


hub_settings = HubSettings()
