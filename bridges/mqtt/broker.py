"""The embedded MQTT broker of `hub serve` (amqtt): registered devices only, own topics only."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

logger = logging.getLogger(__name__)

# (uid, token) -> whether an active device has that token.
DeviceAuthenticator = Callable[[str, str], Awaitable[bool]]


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def device_may_use(uid: str, topic: str) -> bool:
    """Return whether a device may publish to or subscribe to `topic`: only under devices/{uid}/."""
    return topic.startswith(f"devices/{uid}/")


def bridge_may_use(topic: str, action: Action) -> bool:
    """Return whether the bridge may use `topic`: read device topics, write errors and commands."""
    levels = topic.split("/")
    if action == Action.PUBLISH:
        return len(levels) >= 3 and levels[0] == "devices" and levels[2] in {"errors", "commands"}
    return levels[0] in {"devices", "$share"}


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept the bridge's own account and registered, active devices with their tokens."""

    @dataclass
    class Config:
        """The device check and the bridge's credentials."""

        authenticate: Any = None
        bridge_username: str = ""
        bridge_password: str = ""

    async def authenticate(self, *, session: Session) -> bool:
        """Check the CONNECT's username and password."""
        config = self.context.config
        username, password = _text(session.username), _text(session.password)
        if not username or password is None:
            logger.info("broker: refused a connection without credentials")
            return False
        if username == config.bridge_username:
            return hmac.compare_digest(password.encode(), config.bridge_password.encode())
        ok = bool(await config.authenticate(username, password))
        if not ok:
            logger.info("broker: refused device %s: unknown, disabled or wrong token", username)
        return ok


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Keep each device under devices/{its uid}/; the bridge reads all and writes replies."""

    @dataclass
    class Config:
        """The bridge's username."""

        bridge_username: str = ""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        """Allow or refuse one publish, subscribe or delivery."""
        if session is None or topic is None:
            return False
        username = _text(session.username) or ""
        if username == self.context.config.bridge_username:
            return action is not None and bridge_may_use(topic, action)
        return device_may_use(username, topic)


@dataclass(frozen=True, slots=True)
class EmbeddedBroker:
    """Settings of the in-process broker."""

    authenticate: DeviceAuthenticator
    bridge_username: str
    bridge_password: str
    host: str = "127.0.0.1"
    port: int = 1884
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Broker:
        """Create the amqtt broker (not yet started)."""
        return Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    f"{__name__}.DeviceAuthPlugin": {
                        "authenticate": self.authenticate,
                        "bridge_username": self.bridge_username,
                        "bridge_password": self.bridge_password,
                    },
                    f"{__name__}.DeviceTopicPlugin": {"bridge_username": self.bridge_username},
                },
                **self.extra,
            }
        )
