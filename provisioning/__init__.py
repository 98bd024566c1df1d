"""Provisioning keys: devices claim their own credentials (CONTRACT §7)."""
