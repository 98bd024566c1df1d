"""The channel layer's Redis hosts from REDIS_URL: passwords in the URL, TLS with rediss://."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from hub.settings.environment import SettingError


def redis_hosts(urls: str, ca_file: str | None) -> list[dict[str, Any]]:
    """Return channels_redis host entries; each rediss:// one verifies against `ca_file` if given.

    redis-py reads the password from the URL (redis://:password@host,
    rediss://user:password@host) and, for rediss://, checks the server's
    certificate and host name against the system's CAs unless a CA file is given.
    """
    hosts: list[dict[str, Any]] = [{"address": url.strip()} for url in urls.split(",")]
    if ca_file is None:
        return hosts
    if not Path(ca_file).is_file():
        raise SettingError("HUB_REDIS_CA_FILE", f"no such file: {ca_file}")
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, ValueError) as error:
        raise SettingError("HUB_REDIS_CA_FILE", f"not a PEM CA certificate: {error}") from None
    secure = [host for host in hosts if host["address"].startswith("rediss://")]
    if not secure:
        raise SettingError("HUB_REDIS_CA_FILE", "set, but REDIS_URL has no rediss:// (TLS) URL")
    for host in secure:
        host["ssl_ca_certs"] = ca_file
    return hosts
