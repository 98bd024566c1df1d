"""Throttles that count the client's real address, the shared command throttle, the passwords'.

Every throttle identifies an anonymous client by `client_address`: the peer,
or, when the peer is one of HUB_TRUSTED_PROXIES, the right-most
X-Forwarded-For address that is not itself a trusted proxy. Anything left of
that was written by the client and proves nothing. DRF's default would take
the whole header as the identity when NUM_PROXIES is unset, so a client could
pick a fresh one per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest
from rest_framework import throttling
from rest_framework.exceptions import Throttled

from core.conf import hub_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# The scope whose rate (HUB_THROTTLE_TOKEN) bounds password guesses per address.
GUESSES_SCOPE = "token"
COMMAND_SCOPE = "commands"


def _parse_address(text: str) -> IPAddress | None:
    """Return the address in one X-Forwarded-For hop (`a.b.c.d`, `a.b.c.d:port`, `[v6]:port`)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def client_address(request: HttpRequest) -> str:
    """Return the client's address: the peer, or behind trusted proxies the one they saw."""
    peer_text = request.META.get("REMOTE_ADDR") or ""
    peer = _parse_address(peer_text)
    proxies: tuple[IPNetwork, ...] = hub_settings.TRUSTED_PROXIES
    if peer is None:
        return peer_text
    if not _trusted(peer, proxies):
        return str(peer)
    nearest = peer
    hops = (request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",")
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:
            # Not an address a trusted proxy would write: count the proxy that passed it on.
            return str(nearest)
        if not _trusted(address, proxies):
            return str(address)
        nearest = address
    return str(nearest)


class UserRateThrottle(throttling.UserRateThrottle):
    """HUB_THROTTLE_USER per user; anonymous requests count by real address."""

    def get_ident(self, request: Any) -> str:
        """Identify the client by its real address."""
        return client_address(request)


class AnonRateThrottle(throttling.AnonRateThrottle):
    """HUB_THROTTLE_ANON per real address for anonymous requests."""

    def get_ident(self, request: Any) -> str:
        """Identify the client by its real address."""
        return client_address(request)


class PasswordRateThrottle(throttling.SimpleRateThrottle):
    """HUB_THROTTLE_TOKEN per real address: one budget for every door that checks a password."""

    scope = GUESSES_SCOPE

    def get_ident(self, request: Any) -> str:
        """Identify the client by its real address."""
        return client_address(request)

    def get_cache_key(self, request: Any, view: Any) -> str:
        """Key by address even for a logged-in user: guesses are counted where they come from."""
        return str(self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)})

    def allow_request(self, request: Any, view: Any) -> bool:
        """Count one guess; the login forms pass Django's own request and no DRF view."""
        # DRF reads the request and the view only through get_cache_key, which needs
        # nothing more of them than REMOTE_ADDR and X-Forwarded-For.
        return super().allow_request(request, view)


class CommandRateThrottle(throttling.UserRateThrottle):
    """Commands per user at the REST throttle's rate, shared by REST and the WebSocket."""

    scope = COMMAND_SCOPE

    def limit_message(self) -> str:
        """Name the limit, for the 429 and the socket's error frame."""
        return (
            f"command rate limit reached: {self.rate} per user (HUB_THROTTLE_USER), "
            "REST and WebSocket together"
        )

    def allow_request(self, request: Any, view: Any) -> bool:
        """Let the command through, or raise a 429 that names the limit."""
        if super().allow_request(request, view):
            return True
        raise Throttled(self.wait(), detail=f"{self.limit_message()}.")

    def wait_for(self, user: Any) -> float | None:
        """Count one command of this user; return None if allowed, else seconds to wait."""
        try:
            self.allow_request(_UserOnly(user), None)
        except Throttled as throttled:
            # DRF sets `wait` in Throttled.__init__; djangorestframework-stubs 3.16 omit it.
            return float(throttled.wait or 0)  # type: ignore[attr-defined]
        return None


class _UserOnly:
    """What UserRateThrottle reads of a request, for a command that came over a socket."""

    def __init__(self, user: Any) -> None:
        self.user = user
