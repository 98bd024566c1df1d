"""Prometheus series of the devices app: command status changes, device and command counts.

docs/metrics.md lists every series of the hub.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client import Counter, Gauge

from devices.models import Command, CommandStatus, Device

COMMAND_UPDATES = Counter(
    "hub_command_updates",
    "Command status changes this process applied: sent, succeeded and failed (from the "
    "devices, via the bridge), expired (the sweep).",
    ["status"],
)
# Database state, refreshed by each GET /metrics of a web process.
DEVICES = Gauge(
    "hub_devices", "Registered devices by state: online, offline or disabled.", ["state"]
)
COMMANDS = Gauge("hub_commands", "Commands in the database by status.", ["status"])


def commands_updated(commands: Iterable[Command]) -> None:
    """Count command status changes by their new status."""
    for command in commands:
        COMMAND_UPDATES.labels(command.status).inc()


def database_gauges_refresh() -> None:
    """Set the device and command gauges from the database (two grouped counts)."""
    states = dict.fromkeys(("online", "offline", "disabled"), 0)
    for row in Device.objects.order_by().values("active", "online").annotate(n=Count("id")):
        state = "disabled" if not row["active"] else "online" if row["online"] else "offline"
        states[state] += row["n"]
    for state, count in states.items():
        DEVICES.labels(state).set(count)
    statuses = dict.fromkeys(CommandStatus.values, 0)
    for row in Command.objects.order_by().values("status").annotate(n=Count("id")):
        statuses[row["status"]] = row["n"]
    for status, count in statuses.items():
        COMMANDS.labels(status).set(count)
