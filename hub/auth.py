"""API token authentication that refuses malformed keys before they reach the database."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import authentication, exceptions

# DRF's tokens are 40 hexadecimal characters; anything else cannot match one, and
# some input (a NUL byte) would make PostgreSQL raise instead of answer.
TOKEN_KEY = re.compile(r"[0-9a-f]{40}")


def token_key_valid(key: str) -> bool:
    """Return whether `key` has the shape of an API token."""
    return TOKEN_KEY.fullmatch(key) is not None


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication with the key's shape checked first."""

    def authenticate_credentials(self, key: str) -> Any:
        """Refuse a malformed key with 401 instead of querying for it."""
        if not token_key_valid(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
