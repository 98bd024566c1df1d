"""Channel-layer names of the ingest path (owners' groups are in devices.dispatch)."""

from typing import Final

# Bridges send batches here; any one ingest worker takes each.
INGEST_CHANNEL: Final = "telemetry.ingest"
# A bridge's batch, built in bridges/mqtt/bridge.py and read in telemetry/ingest.py.
INGEST_BATCH: Final = "ingest.batch"
# The ingest worker's "stored" reply to a batch's bridge, built in telemetry/ingest.py.
INGEST_STORED: Final = "ingest.stored"
# A stopping ingest worker's wake-up for its own pending receive (telemetry/ingest.py);
# whichever worker takes it ignores it.
INGEST_WAKE: Final = "ingest.wake"
