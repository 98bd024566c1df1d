"""`Authorization: Bearer <API key>` for DRF; a read key is refused unsafe methods here, once."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apikeys.services import KeyRefused, api_key_check, api_key_grant, api_key_touch
from devices.access import KeyGrant, request_grant

READ_ONLY_MESSAGE = "this API key is read-only: GET, HEAD and OPTIONS only"
KEY_CANNOT_MANAGE_KEYS = "API keys are managed with your session or your API token, not a key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate `Authorization: Bearer hub_…` as the key's owner, with its grant as auth.

    A read key's unsafe request is refused (403) right here, before any view or
    permission runs: no view can forget it, whatever permission classes it sets.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, KeyGrant] | None:
        """Return (owner, grant) for a Bearer key; None when the header is another scheme."""
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Bearer header: give one API key.")
        try:
            text = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        now = timezone.now()
        try:
            key = api_key_check(text=text, now=now)
        except KeyRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from None
        grant = api_key_grant(key=key)
        if grant.read_only and request.method not in permissions.SAFE_METHODS:
            raise exceptions.PermissionDenied(READ_ONLY_MESSAGE)
        api_key_touch(key=key, now=now)
        return key.owner, grant

    def authenticate_header(self, request: Request) -> str:
        """Ask for a Bearer key on a 401 when this class comes first."""
        return self.keyword


class NotApiKey(permissions.BasePermission):
    """Refuse requests made with an API key: keys are managed by their owner only."""

    message = KEY_CANNOT_MANAGE_KEYS

    def has_permission(self, request: Request, view: Any) -> bool:
        """Allow sessions and user tokens, not API keys."""
        return request_grant(request) is None
