"""Fixtures of the provisioning tests: the managed Mosquitto of the security tests."""

from tests.security.conftest import dynsec, managed

__all__ = ["dynsec", "managed"]
