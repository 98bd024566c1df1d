"""Count what a simulated fleet does; read by the live rate line and by callers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class FleetStats:
    """Live counters of a fleet, shared by its devices on one event loop."""

    devices: int = 0
    connected: int = 0  # devices connected right now
    sent: int = 0  # telemetry messages published (acknowledged at QoS 1)
    errors: int = 0  # failed connection attempts, lost connections, failed publishes
    connects: int = 0  # successful connections, reconnections included
    commands: int = 0  # commands answered, carried out or refused
    attributes: int = 0  # desired attributes messages applied and reported
    buffered: int = 0  # readings taken and not yet published, right now
    dropped: int = 0  # readings dropped unpublished because a device's buffer was full
    provisioned: int = 0  # devices that claimed their credentials with a provisioning key
