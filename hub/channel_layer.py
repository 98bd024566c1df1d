"""channels_redis' layer, fixed for several Redis hosts (REDIS_URL listing more than one).

channels_redis 4.3 picks the host of a message for a process-specific channel
(`specific.<process>!<id>`) by hashing the whole name in `send`, but reads it
from the host of `specific.<process>!` in `receive`: with two or more hosts,
about half of such messages land where nobody reads them (the ingest worker's
"stored" replies to a bridge, the health check's round trip). Hashing only the
process part in both places puts each process's channels on one host, as
`group_send` already does. Upstream: django/channels issue #1492.
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer as UpstreamRedisChannelLayer


class RedisChannelLayer(UpstreamRedisChannelLayer):  # type: ignore[misc]
    """The Redis channel layer, sending process-specific messages to the host their reader reads."""

    def consistent_hash(self, value: str | bytes) -> int:
        """Return the host index of a channel or group; a process's channels share one."""
        if isinstance(value, str) and "!" in value:
            value = value[: value.index("!") + 1]
        return int(super().consistent_hash(value))
