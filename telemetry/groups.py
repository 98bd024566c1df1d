"""Channel-layer names shared by the ingest path and the live consumers."""

INGEST_CHANNEL = "telemetry.ingest"


def owner_group(owner_id: int) -> str:
    """Return the group that carries live events for every device of one owner.

    Fan-out goes to owners, not devices, so one batch costs one group_send per
    owner present in it, however many devices and sockets there are.
    """
    return f"owner.{owner_id}"
