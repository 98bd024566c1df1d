"""Answer BrokerUnavailable with a 503 outside DRF too (the admin deleting a device or a user)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from devices.broker import BrokerUnavailable


class BrokerUnavailableMiddleware:
    """Turn a device change the managed broker did not take into a 503 page, not a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer 503 naming the broker; the transaction was rolled back, nothing changed."""
        if isinstance(exception, BrokerUnavailable):
            return HttpResponse(
                f"503 Service Unavailable: {exception.detail}\n",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        return None
