"""Commands the hub hands to the bridge, published to their devices over MQTT.

Any one bridge takes each `command.publish` message from the commands channel (and
each `attributes.publish`: a device's desired attributes, published retained).
While the broker is unreachable, commands wait (the oldest go past
COMMANDS_WAITING: the device's next reconnect hands them out again); once
published, the broker's PUBACK becomes a `sent` event in the next batch.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from bridges.mqtt.connection import MqttConnection
from devices.events import ATTRIBUTES_PUBLISH

# Commands held while the broker is unreachable; past this the oldest wait for the
# device's next reconnect to be handed out again.
COMMANDS_WAITING = 10_000


def command_payload(method: str, params: Any) -> bytes:
    """Encode a command as published to devices/{uid}/commands/{id}."""
    return orjson.dumps({"method": method, "params": params})


def desired_payload(version: int, values: Any) -> bytes:
    """Encode desired attributes as published, retained, to devices/{uid}/attributes/desired."""
    return orjson.dumps({"version": version, "values": values})


class CommandPublisher:
    """Publish commands at QoS 1, holding them while disconnected; map PUBACKs to command ids."""

    def __init__(self) -> None:
        self._waiting: deque[dict[str, Any]] = deque(maxlen=COMMANDS_WAITING)
        self._mids: dict[int, str] = {}

    def take(self, command: dict[str, Any], connection: MqttConnection | None) -> None:
        """Publish a command now on `connection`, or hold it until the next connection."""
        if connection is None:
            self._waiting.append(command)
        else:
            self._publish(command, connection)

    def connected(self, connection: MqttConnection) -> None:
        """A new connection: forget the old one's message ids, publish what waited."""
        self._mids.clear()
        while self._waiting:
            self._publish(self._waiting.popleft(), connection)

    def published(self, mid: int) -> str | None:
        """Return the id of the command the broker acknowledged with `mid`, if one."""
        return self._mids.pop(mid, None)

    def _publish(self, command: dict[str, Any], connection: MqttConnection) -> None:
        if command.get("type") == ATTRIBUTES_PUBLISH:
            # Retained: a device that subscribes later, or again, gets the latest at once.
            connection.publish(
                f"devices/{command['device']}/attributes/desired",
                desired_payload(int(command["version"]), command.get("values") or {}),
                qos=1,
                retain=True,
            )
            return
        topic = f"devices/{command['device']}/commands/{command['id']}"
        mid = connection.publish(
            topic, command_payload(command["method"], command.get("params") or {}), qos=1
        )
        self._mids[mid] = str(command["id"])
