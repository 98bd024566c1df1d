"""The bridge's configuration: broker address, session and batching."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from devices.events import COMMANDS_CHANNEL
from telemetry.codec import DEFAULT_LIMITS, Limits


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where and as whom to connect."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse mqtt://user:pass@host:port (mqtts:// for TLS)."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Everything the bridge needs; built by the `hub` command from settings."""

    broker: BrokerAddress = field(default_factory=BrokerAddress)
    client_id: str = "hub-bridge"
    # MQTT 5 lets the bridge bound its unacknowledged messages (receive maximum);
    # 3.1.1 is for brokers without 5, such as the embedded one.
    protocol: int = 5
    # Persistent session: the broker keeps QoS 1 messages while the bridge is away.
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 10_000
    keepalive_s: int = 30
    # With a group name, subscribe as $share/<group>/… so several bridges split the load.
    shared_group: str | None = None
    batch_max_readings: int = 10_000
    batch_max_delay_s: float = 0.05
    # Batches sent and not yet confirmed; more wait in the bridge, where the open one grows.
    batches_in_flight: int = 4
    # Send at once whenever the store is idle (lowest latency); off, a batch always
    # waits for its delay or its size (fewer, larger transactions: embedded mode).
    send_when_idle: bool = True
    # A batch not confirmed stored within this time is sent again (dedup makes it safe).
    ingest_timeout_s: float = 30.0
    # Stop reading from the broker while this many readings wait to be stored.
    max_pending_readings: int = 100_000
    limits: Limits = DEFAULT_LIMITS
    # Rejections are logged at most once per reason per interval, with the count held back.
    rejection_log_interval_s: float = 10.0
    # The channel-layer channel the hub hands commands to; any one bridge takes each.
    commands_channel: str = COMMANDS_CHANNEL

    def topic_filters(self) -> list[str]:
        """Return the subscriptions: telemetry, SenML, presence, replies, reported attributes."""
        filters = [
            "devices/+/telemetry",
            "devices/+/senml",
            "devices/+/status",
            "devices/+/commands/+/reply",
            "devices/+/attributes/reported",
        ]
        if self.shared_group:
            return [f"$share/{self.shared_group}/{topic}" for topic in filters]
        return filters
