"""Simulated devices that speak only MQTT: telemetry, presence, commands and attributes."""

from firmware_sim.config import DeviceIdentity, FleetConfig, numbered_identities, read_credentials
from firmware_sim.fleet import run_fleet
from firmware_sim.stats import FleetStats

__all__ = [
    "DeviceIdentity",
    "FleetConfig",
    "FleetStats",
    "numbered_identities",
    "read_credentials",
    "run_fleet",
]
