"""Shared infrastructure below every app: the HUB settings accessor, throttles, streamed bodies.

The layers import one way (docs/architecture.md): `hub` (the composition root)
→ `bridges` → `telemetry` → `alarms` → `devices` → `core`. `core` imports
Django and DRF only, never an app nor `hub`; an app reads the hub's tunables
through `core.conf.hub_settings` and defines its own Prometheus series in its
own `metrics` module.
"""
