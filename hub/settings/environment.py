"""Read settings from the environment, failing with one line that names the variable."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")


class SettingError(ImproperlyConfigured):
    """A setting from the environment is missing or malformed."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable's value, or the default when it is unset or empty."""
    value = os.environ.get(name, "")
    return value if value.strip() else default


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean variable: 1/true/yes/on or 0/false/no/off."""
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingError(name, f"expected true or false, got {value!r}")


def env_number(name: str, default: T, parse: Callable[[str], T], minimum: float = 0) -> T:
    """Return a numeric variable parsed with `parse`, at least `minimum`."""
    value = env_str(name)
    if value is None:
        return default
    try:
        number = parse(value.strip())
    except ValueError:
        raise SettingError(name, f"expected a number, got {value!r}") from None
    if number < minimum:  # type: ignore[operator]
        raise SettingError(name, f"must be at least {minimum}, got {value!r}")
    return number


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """Return one of `choices` (matched without regard to case)."""
    value = env_str(name)
    if value is None:
        return default
    for choice in choices:
        if value.strip().lower() == choice.lower():
            return choice
    raise SettingError(name, f"expected one of {', '.join(choices)}, got {value!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list variable."""
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, schemes: tuple[str, ...]) -> str | None:
    """Return a URL variable after checking its scheme and host."""
    value = env_str(name)
    if value is None:
        return None
    for url in value.split(","):
        parts = urlsplit(url.strip())
        if parts.scheme not in schemes:
            allowed = " or ".join(f"{scheme}://" for scheme in schemes)
            raise SettingError(name, f"expected a {allowed} URL, got {url.strip()!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise SettingError(name, f"malformed port in {url.strip()!r}") from None
        if not parts.hostname and parts.scheme not in {"sqlite", "unix"}:
            raise SettingError(name, f"no host in {url.strip()!r}")
    return value.strip()


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_networks(name: str) -> tuple[IPNetwork, ...]:
    """Return a comma-separated list of IP addresses or CIDR networks (none when unset)."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingError(
                name, f"expected IP addresses or networks like 10.0.0.0/8, got {item!r}"
            ) from None
    return tuple(networks)
