"""What a device's MQTT session was granted on, and whether the database still grants it.

A CONNECT is accepted for one device row and one token. The broker keeps that
grant in the session and compares it with the database: another row under the
same uid (deleted and registered again), another token hash (rotated) or an
inactive row ends the session. Changes made in this process are marked at
once, so the broker holds the device's publishes until the database has been
read again. A provisioning key's session lasts while its key is unrevoked.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple


class DeviceGrant(NamedTuple):
    """The device row and token hash a CONNECT was accepted on."""

    device_id: int
    token_hash: str


class DeviceRecord(NamedTuple):
    """A device row as the broker's check reads it."""

    device_id: int
    token_hash: str
    active: bool


class KeyGrant(NamedTuple):
    """The provisioning key a CONNECT was accepted on (username = key, password = secret)."""

    key: str


# (uid, token) -> the grant of the active device with that uid and token, or None.
DeviceAuthenticator = Callable[[str, str], Awaitable[DeviceGrant | None]]
# uids -> the rows that have them now (absent: no such device).
DeviceLookup = Callable[[list[str]], Awaitable[dict[str, DeviceRecord]]]
# (key, secret) -> the grant of the unrevoked key with that secret, or None.
KeyAuthenticator = Callable[[str, str], Awaitable[KeyGrant | None]]
# keys -> those of them that are still unrevoked.
KeyLookup = Callable[[list[str]], Awaitable[set[str]]]
# (key, secret, client id, request payload) -> the answer's payload.
Provisioner = Callable[[str, str, str, bytes], Awaitable[bytes]]


def grant_holds(grant: DeviceGrant, record: DeviceRecord | None) -> bool:
    """Tell whether a session's grant still stands: same row, same token, still active."""
    return (
        record is not None
        and record.active
        and record.device_id == grant.device_id
        and record.token_hash == grant.token_hash
    )


class ChangedDevices:
    """Uids whose device rows this process changed and the broker has not read again (thread-safe).

    Django's signal receivers add to it from request threads; the broker's check
    takes a snapshot before it reads the database and settles only the marks that
    are still the ones it saw, so a change made meanwhile stays marked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, int] = {}
        self._counter = itertools.count()

    def add(self, uid: str) -> None:
        """Mark a uid as changed."""
        with self._lock:
            self._marks[uid] = next(self._counter)

    def __contains__(self, uid: object) -> bool:
        return uid in self._marks

    def snapshot(self) -> dict[str, int]:
        """Return the marks as they are now."""
        with self._lock:
            return dict(self._marks)

    def settle(self, snapshot: dict[str, int]) -> None:
        """Clear the marks of a snapshot that have not been set again since."""
        with self._lock:
            for uid, mark in snapshot.items():
                if self._marks.get(uid) == mark:
                    del self._marks[uid]


def uids_sorted(*groups: Iterable[str]) -> list[str]:
    """Return the distinct uids of several groups, sorted (for a stable query)."""
    return sorted(set().union(*groups))
