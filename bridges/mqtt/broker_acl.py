"""Topic rules of the embedded broker: what a device and the bridge may publish, subscribe, receive.

They are those the hub gives a Mosquitto it manages (devices.dynsec): a device
publishes only its device→hub topics (CONTRACT §2, and attributes/reported),
subscribes and receives only under devices/{its uid}/; the bridge's account
subscribes to the device topics it reads and publishes errors and commands.
"""

from __future__ import annotations

from typing import Final

from amqtt.contexts import Action

# What the bridge subscribes to: BridgeConfig.topic_filters() (a test keeps them equal).
BRIDGE_FILTERS: Final = (
    "devices/+/telemetry",
    "devices/+/senml",
    "devices/+/status",
    "devices/+/commands/+/reply",
    "devices/+/attributes/reported",
)
# What a device publishes, under devices/{uid}/: CONTRACT §2's device→hub topics, and its
# reported attributes (issue 15).
DEVICE_PUBLICATIONS: Final = (
    "telemetry",
    "senml",
    "status",
    "commands/+/reply",
    "attributes/reported",
)
# Under devices/{uid}/, topics a device may not retain: a retained "command" would be
# handed to whoever subscribes there next.
DEVICE_UNRETAINABLE_PREFIX: Final = "commands/"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether a topic matches an MQTT topic filter (`+` and `#` wildcards)."""
    levels = topic.split("/")
    for index, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if index >= len(levels) or level not in ("+", levels[index]):
            return False
    return len(topic_filter.split("/")) == len(levels)


def device_may_use(uid: str, topic: str) -> bool:
    """Return whether `topic` (or a filter) lies under devices/{uid}/: to subscribe and receive."""
    return topic.startswith(f"devices/{uid}/")


def device_may_publish(uid: str, topic: str, *, retain: bool = False) -> bool:
    """Return whether a device may publish to `topic`: its device→hub topics, replies unretained."""
    prefix = f"devices/{uid}/"
    if not topic.startswith(prefix):
        return False
    rest = topic[len(prefix) :]
    if retain and rest.startswith(DEVICE_UNRETAINABLE_PREFIX):
        return False
    return any(topic_matches(pattern, rest) for pattern in DEVICE_PUBLICATIONS)


def bridge_may_use(topic: str, action: Action) -> bool:
    """Return whether the bridge may use `topic`: read device topics, write hub→device ones."""
    levels = topic.split("/")
    if action == Action.PUBLISH:
        # devices/{uid}/errors, devices/{uid}/commands/{id} and devices/{uid}/attributes/desired
        # (retained); amqtt refuses wildcards here.
        shape = (len(levels), levels[0], levels[2] if len(levels) > 2 else None)
        if shape == (4, "devices", "attributes"):
            return levels[3] == "desired"
        return shape in {(3, "devices", "errors"), (4, "devices", "commands")}
    if action == Action.SUBSCRIBE:
        if levels[0] == "$share" and len(levels) > 2 and levels[1] not in ("", "+", "#"):
            topic = "/".join(levels[2:])  # $share/<group>/<filter>
        return topic in BRIDGE_FILTERS
    return any(topic_matches(topic_filter, topic) for topic_filter in BRIDGE_FILTERS)


def key_client_id_ok(client_id: str) -> bool:
    """Tell whether a provisioning key's session may use this client id (one topic level)."""
    return bool(client_id) and not any(char in client_id for char in "/+#\x00")


def key_may_use(client_id: str, topic: str, action: Action) -> bool:
    """Return whether a provisioning key's session may use `topic`: its own claim, nothing else.

    It publishes provision/{its client id}/request and subscribes to and receives
    provision/{its client id}/response (CONTRACT §7).
    """
    if not key_client_id_ok(client_id):
        return False
    suffix = "request" if action == Action.PUBLISH else "response"
    return topic == f"provision/{client_id}/{suffix}"


def device_uid_of(topic: str) -> str | None:
    """Return the uid of a devices/{uid}/… topic, or None for any other topic."""
    levels = topic.split("/", 2)
    if len(levels) == 3 and levels[0] == "devices" and levels[1]:
        return levels[1]
    return None
