"""WebSocket authentication: the session cookie, or ?token=<API token>."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from hub.auth import token_key_valid


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    if not token_key_valid(key):
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Authenticate a socket by its `token` query parameter when one is given."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Set scope["user"] from the token, leaving session auth to the inner stack."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("token")
        if tokens:
            scope = dict(scope, user=await _user_for_token(tokens[0]))
        return await super().__call__(scope, receive, send)


def auth_stack(inner: Any) -> Any:
    """Session auth, overridden by a token when the socket carries one."""
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))


class BrowserOriginValidator(OriginValidator):  # type: ignore[misc]
    """Refuse sockets whose Origin is not one of ALLOWED_HOSTS; allow clients that send none.

    Browsers always send Origin, so cross-site pages are refused; scripts and
    devices send none and authenticate with a token, which a foreign page cannot read.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        """Accept a missing Origin; check a present one against the allowed hosts."""
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def origin_validator(inner: Any) -> BrowserOriginValidator:
    """Wrap `inner` so browser sockets must come from one of ALLOWED_HOSTS."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(inner, allowed)
