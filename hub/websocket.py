"""WebSocket authentication: the session cookie, or ?token=<API token>."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth import get_user as auth_get_user
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie
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


@database_sync_to_async
def _user_for_session(cookie_header: str) -> Any:
    """Return the user of the session cookie, as Django's session auth would."""
    session_key = parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    # django.contrib.auth.get_user needs only the request's session.
    return auth_get_user(SimpleNamespace(session=store(session_key)))


class SocketAuthMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Set scope["user"] once, at connect: from ?token=, else from the session cookie.

    Channels' AuthMiddlewareStack also wraps every outgoing message to save the
    session, which a live socket never changes; skipping that wrapper is a tenth
    of the web server's work per frame.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Resolve the user, then run the inner application."""
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if tokens:
            user = await _user_for_token(tokens[0])
        else:
            headers = dict(scope.get("headers", ()))
            user = await _user_for_session(headers.get(b"cookie", b"").decode("latin-1"))
        return await super().__call__(dict(scope, user=user), receive, send)


def auth_stack(inner: Any) -> Any:
    """Token or session authentication for sockets."""
    return SocketAuthMiddleware(inner)


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
