"""Request types for views that only signed-in users reach, so mypy knows `request.user`.

Annotations only: at run time the views get Django's and DRF's own request objects,
and their login_required / permission classes keep anonymous users out.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.request import Request


class AuthenticatedHttpRequest(HttpRequest):
    """A Django request behind login_required."""

    user: User


class AuthenticatedRequest(Request):
    """A DRF request behind a permission class that requires a user."""

    user: User
