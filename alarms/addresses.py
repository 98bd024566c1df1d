"""Where webhooks may POST: hosts that resolve only to global addresses (no SSRF).

Checked when a webhook is saved and again when each delivery is sent, which
connects to the very address it checked (a DNS answer that changes in between
cannot redirect it). HUB_WEBHOOK_ALLOW_PRIVATE turns the check off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.conf import hub_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """A webhook URL that must not be reached, with the reason."""


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL's host, port, and the checked address to connect to."""

    scheme: str
    host: str
    port: int
    address: str


def address_is_public(address: IPAddress) -> bool:
    """Tell whether an address is globally routable unicast (not loopback, private, …)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def url_parts(url: str) -> tuple[str, str, int]:
    """Return (scheme, host, port) of an http(s) URL, or raise AddressRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise AddressRefused("must name a host")
    if parts.username or parts.password:
        raise AddressRefused("must not carry credentials; the signature authenticates the hub")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _choose(host: str, addresses: list[str]) -> str:
    if not addresses:
        raise AddressRefused(f"host {host!r} has no address")
    if not hub_settings.WEBHOOK_ALLOW_PRIVATE:
        for text in addresses:
            if not address_is_public(ipaddress.ip_address(text.split("%", 1)[0])):
                raise AddressRefused(
                    f"host {host!r} resolves to {text}, which is not a public address "
                    "(loopback, private, link-local or reserved); see HUB_WEBHOOK_ALLOW_PRIVATE"
                )
    return addresses[0]


def url_check(url: str) -> Target:
    """Resolve a webhook URL now and check every address; raise AddressRefused if refused."""
    scheme, host, port = url_parts(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise AddressRefused(f"host {host!r} does not resolve: {error}") from None
    return Target(scheme, host, port, _choose(host, [str(info[4][0]) for info in infos]))


async def url_resolve(url: str) -> Target:
    """Resolve and check a webhook URL without blocking the event loop."""
    scheme, host, port = url_parts(url)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise AddressRefused(f"host {host!r} does not resolve: {error}") from None
    return Target(scheme, host, port, _choose(host, [str(info[4][0]) for info in infos]))
