"""Describe a simulated fleet: broker address, device identities, rate and QoS."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from firmware_sim.faults import FaultError, FaultSpec, faults_assign

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PORT = 1883
DEFAULT_UID_PREFIX = "sim-"
DEFAULT_KEEPALIVE_S = 30
PAYLOAD_FORMATS = ("json", "senml")
# History readings per second, the whole fleet together (--backfill-rate).
DEFAULT_BACKFILL_RATE = 5000.0
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
class ProvisionKey:
    """The provisioning key and secret with which devices without a token claim theirs."""

    key: str
    secret: str

    def __repr__(self) -> str:
        return f"ProvisionKey(key={self.key!r}, secret=…)"


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything run_fleet needs; the devices connect as their own uid and token."""

    identities: tuple[DeviceIdentity, ...]
    rate: float = 1.0
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    qos: int = 1
    keepalive: int = DEFAULT_KEEPALIVE_S
    # Faults some devices have on a cycle (firmware_sim.faults), given out in fleet order.
    faults: tuple[FaultSpec, ...] = ()
    # "json": native JSON on devices/{uid}/telemetry; "senml": SenML packs with units on
    # devices/{uid}/senml.
    payload_format: str = "json"
    # Seconds of history each device sends (as the sensors would have read it) beside its
    # live readings, at `backfill_rate` readings per second for the fleet together.
    backfill: float = 0.0
    backfill_rate: float = DEFAULT_BACKFILL_RATE
    # Devices without a token first claim theirs with this key, over MQTT.
    provision: ProvisionKey | None = None

    def __post_init__(self) -> None:
        if not self.identities:
            raise ConfigError("a fleet needs at least one device")
        if self.payload_format not in PAYLOAD_FORMATS:
            raise ConfigError(f"payload format must be json or senml, not {self.payload_format!r}")
        if not 0 <= self.backfill < float("inf"):
            raise ConfigError(f"backfill must be a duration of 0 or more, not {self.backfill}")
        if not (self.backfill_rate > 0 and self.backfill_rate < float("inf")):
            raise ConfigError(f"backfill rate must be a positive number, not {self.backfill_rate}")
        if not (self.rate > 0 and self.rate < float("inf")):
            raise ConfigError(f"rate must be a positive number, not {self.rate}")
        if self.qos not in (0, 1):
            raise ConfigError(f"qos must be 0 or 1, not {self.qos}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"invalid broker port {self.port}")
        try:
            faults_assign(self.faults, [identity.uid for identity in self.identities])
        except FaultError as exc:
            raise ConfigError(str(exc)) from None

    def faulty(self) -> dict[str, FaultSpec]:
        """Return the fault of each device that has one, by uid."""
        return faults_assign(self.faults, [identity.uid for identity in self.identities])


def parse_duration(text: str) -> float:
    """Return the seconds of a duration like 90, 90s, 15m, 24h or 7d; raise ConfigError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise ConfigError(f"invalid duration {text!r}: expected a number and s, m, h or d, like 7d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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
