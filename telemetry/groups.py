"""Channel-layer names of the ingest path (owners' groups are in devices.dispatch)."""

INGEST_CHANNEL = "telemetry.ingest"
