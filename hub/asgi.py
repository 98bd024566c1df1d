"""The ASGI application: HTTP, the /ws/telemetry/ socket, and the ingest channel route."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

try:
    from django.core.asgi import get_asgi_application

    django_application = get_asgi_application()
except ImproperlyConfigured as error:
    sys.stderr.write(f"hub: configuration error: {error}\n")
    raise SystemExit(2) from None

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter
from django.urls import path

from hub.heap import heap_settle
from hub.websocket import auth_stack, origin_validator
from telemetry.groups import INGEST_CHANNEL
from telemetry.ingest import IngestConsumer
from telemetry.live import LiveConsumer

websocket_urlpatterns = [path("ws/telemetry/", LiveConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": origin_validator(auth_stack(URLRouter(websocket_urlpatterns))),
        "channel": ChannelNameRouter({INGEST_CHANNEL: IngestConsumer.as_asgi()}),
    }
)

# Last: everything above is built for the life of the process.
heap_settle()
