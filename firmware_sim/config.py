"""Describe a simulated fleet: broker address, device identities, rate and QoS."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PORT = 1883
DEFAULT_UID_PREFIX = "sim-"
DEFAULT_KEEPALIVE_S = 30
UID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """Raised for a broker URL, credentials file or setting that cannot be used."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A device's uid and, when the broker checks it, its token (the MQTT password)."""

    uid: str
    token: str | None = None

    def __post_init__(self) -> None:
        if not UID_RE.match(self.uid):
            raise ConfigError(f"invalid device uid {self.uid!r}")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything run_fleet needs; the devices connect as their own uid and token."""

    identities: tuple[DeviceIdentity, ...]
    rate: float = 1.0
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    qos: int = 1
    keepalive: int = DEFAULT_KEEPALIVE_S

    def __post_init__(self) -> None:
        if not self.identities:
            raise ConfigError("a fleet needs at least one device")
        if not (self.rate > 0 and self.rate < float("inf")):
            raise ConfigError(f"rate must be a positive number, not {self.rate}")
        if self.qos not in (0, 1):
            raise ConfigError(f"qos must be 0 or 1, not {self.qos}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"invalid broker port {self.port}")


def parse_broker_url(url: str) -> tuple[str, int]:
    """Return (host, port) of an mqtt://[user:pass@]host[:port] URL; userinfo is ignored."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid broker URL {url!r}: {exc}") from None
    if parts.scheme != "mqtt":
        raise ConfigError(f"broker URL must start with mqtt://, got {url!r}")
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"broker URL {url!r} must not have a path or query")
    return parts.hostname, port or DEFAULT_PORT


def numbered_identities(count: int, prefix: str = DEFAULT_UID_PREFIX) -> tuple[DeviceIdentity, ...]:
    """Return `count` password-less identities prefix0001, prefix0002, …"""
    if count < 1:
        raise ConfigError(f"number of devices must be at least 1, not {count}")
    return tuple(DeviceIdentity(f"{prefix}{n:04d}") for n in range(1, count + 1))


def read_credentials(path: Path) -> tuple[DeviceIdentity, ...]:
    """Read one {"uid": …, "token": …} JSON object per line, as `hub device add` prints."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc}") from None
    identities: list[DeviceIdentity] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON: {exc.msg}") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        uid, token = entry.get("uid"), entry.get("token")
        if not isinstance(uid, str) or not isinstance(token, str):
            raise ConfigError(f'{where}: needs string fields "uid" and "token"')
        if uid in seen:
            raise ConfigError(f"{where}: device {uid} listed twice")
        seen.add(uid)
        try:
            identities.append(DeviceIdentity(uid, token))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if not identities:
        raise ConfigError(f"credentials file {path} lists no devices")
    return tuple(identities)
