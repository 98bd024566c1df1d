"""WebSocket authentication (the session cookie, ?token=<API token or key>), the Origin check."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user as auth_get_user
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from django.utils.http import is_same_domain
from rest_framework.authtoken.models import Token

from apikeys.services import (
    KeyRefused,
    api_key_check,
    api_key_grant,
    api_key_touch,
    looks_like_api_key,
)
from devices.access import KeyGrant
from hub.auth import token_key_valid


@database_sync_to_async
def _user_for_token(key: str) -> tuple[Any, KeyGrant | None]:
    """Return the user of an API token or API key (with the key's grant); anonymous if none."""
    if looks_like_api_key(key):
        now = timezone.now()
        try:
            api_key = api_key_check(text=key, now=now)
        except KeyRefused:
            return AnonymousUser(), None
        api_key_touch(key=api_key, now=now)
        return api_key.owner, api_key_grant(key=api_key)
    if not token_key_valid(key):
        return AnonymousUser(), None
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser(), None
    return token.user, None


@database_sync_to_async
def _user_for_session(cookie_header: str) -> Any:
    """Return the user of the session cookie, as Django's session auth would."""
    session_key = parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    # django.contrib.auth.get_user needs only the request's session.
    return auth_get_user(cast(HttpRequest, SimpleNamespace(session=store(session_key))))


class SocketAuthMiddleware(BaseMiddleware):
    """Set scope["user"] once, at connect: from ?token=, else from the session cookie.

    A `?token=` that is an API key also sets scope["grant"] (devices.access.KeyGrant):
    what the key may see and do; the consumer rechecks it while the socket is open.

    Channels' AuthMiddlewareStack also wraps every outgoing message to save the
    session, which a live socket never changes; skipping that wrapper is a tenth
    of the web server's work per frame.
    """

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> Any:
        """Resolve the user, then run the inner application."""
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        grant: KeyGrant | None = None
        if tokens:
            user, grant = await _user_for_token(tokens[0])
        else:
            headers = dict(scope.get("headers", ()))
            user = await _user_for_session(headers.get(b"cookie", b"").decode("latin-1"))
        # types-channels type the scope as a TypedDict of their own, without "grant".
        inner_scope: Any = dict(scope, user=user, grant=grant)
        return await super().__call__(inner_scope, receive, send)


def auth_stack(inner: Any) -> Any:
    """Token or session authentication for sockets."""
    return SocketAuthMiddleware(inner)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(url: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of an http(s) origin, the port filled in; None if not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def _secure(scope: Mapping[str, Any], headers: dict[bytes, bytes]) -> bool:
    """Tell whether the browser reached the hub over TLS, as Django's request.is_secure() would."""
    proxy_header: tuple[str, str] | None = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        # Django's META name (HTTP_X_FORWARDED_PROTO) as an ASGI header (x-forwarded-proto).
        value = headers.get(name.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if value is not None:
            return value.decode("latin-1").split(",")[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def origin_allowed(origin: str, *, host: str | None, secure: bool) -> bool:
    """Tell whether a browser page at `origin` may open a socket to the hub at `host`.

    The rule of Django's CSRF check for forms: the origin is the hub's own
    (scheme, host and port, the host one of ALLOWED_HOSTS), or one of
    CSRF_TRUSTED_ORIGINS.
    """
    parsed = _origin_parts(origin)
    if parsed is None:
        return False
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    if host and validate_host(split_domain_port(host)[0], allowed_hosts):
        own = _origin_parts(f"{'https' if secure else 'http'}://{host}")
        if own is not None and parsed == own:
            return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in trusted:
            # https://*.example.com: any subdomain, as Django reads it.
            pattern = urlsplit(trusted)
            netloc = urlsplit(origin).netloc.lower()
            if parsed[0] == pattern.scheme and is_same_domain(netloc, pattern.netloc.lstrip("*")):
                return True
        elif _origin_parts(trusted) == parsed:
            return True
    return False


class SameOriginValidator:
    """Refuse sockets from pages of another origin; allow clients that send no Origin.

    Browsers always send Origin, so a foreign page (another site, or another
    port of the same host) is refused with HTTP 403 before the socket opens;
    scripts and devices send none and authenticate with a token, which a
    foreign page cannot read.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> Any:
        """Pass the socket on, or deny it."""
        headers = dict(scope.get("headers", ()))
        origin = headers.get(b"origin")
        if origin is not None:
            host = headers.get(b"host")
            if not origin_allowed(
                origin.decode("latin-1"),
                host=host.decode("latin-1") if host is not None else None,
                secure=_secure(scope, headers),
            ):
                # types-channels type the scope as a TypedDict of their own.
                return await WebsocketDenier()(cast(Any, scope), receive, send)
        return await self.application(scope, receive, send)


def origin_validator(inner: Any) -> SameOriginValidator:
    """Wrap `inner` so browser sockets must come from the hub's own origin (or a trusted one)."""
    return SameOriginValidator(inner)
