"""The ASGI application: HTTP and the /ws/telemetry/ socket.

The ingest worker is not a Channels consumer: `hub ingest` and `hub serve` run
telemetry.ingest.ingest_run, which takes batches off its channel (HUB_INGEST_BATCHES_AT_ONCE).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

try:
    from django.core.asgi import get_asgi_application

    django_application = get_asgi_application()
except ImproperlyConfigured as error:
    sys.stderr.write(f"hub: configuration error: {error}\n")
    raise SystemExit(2) from None

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from hub.heap import heap_settle
from hub.websocket import auth_stack, origin_validator
from telemetry.live import LiveConsumer

# django-stubs type path() for Django views only, and types-channels type URLRouter's routes
# as a pattern class of their own: the ASGI consumer and the route list pass as Any.
live_consumer: Any = LiveConsumer.as_asgi()
websocket_urlpatterns: list[Any] = [path("ws/telemetry/", live_consumer)]

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": origin_validator(auth_stack(URLRouter(websocket_urlpatterns))),
    }
)

# Last: everything above is built for the life of the process.
heap_settle()
