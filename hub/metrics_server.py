"""The workers' own HTTP endpoint: /metrics and /healthz on `--metrics-port`.

`hub bridge` and `hub ingest` serve no HTTP otherwise. prometheus_client's
WSGI app answers /metrics from a thread, so a scrape never waits on the event
loop; /healthz runs the process's checks on its event loop, so a wedged loop
shows as a failed check, not as a healthy process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.management.base import CommandParser
from prometheus_client import REGISTRY, make_wsgi_app

import hub.metrics  # noqa: F401 - every series of the hub, at 0 where this process does not count it
from hub.health import CHECK_TIMEOUT_S, Check, checks_run
from hub.startup import StartupError, listen_problem

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log: a scrape every few seconds would drown the worker's own lines."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


def metrics_arguments(parser: CommandParser) -> None:
    """Declare --metrics-port and --metrics-host on a worker command."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="serve Prometheus /metrics and /healthz on this port (default: none)",
    )
    parser.add_argument(
        "--metrics-host",
        default=DEFAULT_HOST,
        metavar="H",
        help=f"address for --metrics-port (default {DEFAULT_HOST}; 0.0.0.0 in a container)",
    )


def _app(loop: asyncio.AbstractEventLoop, checks: Mapping[str, Check]) -> Any:
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            ok, report = _health(loop, checks)
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps(report).encode()]
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /healthz\n"]

    return app


def _health(
    loop: asyncio.AbstractEventLoop, checks: Mapping[str, Check]
) -> tuple[bool, dict[str, Any]]:
    try:
        future = asyncio.run_coroutine_threadsafe(checks_run(checks), loop)
    except RuntimeError as error:  # the loop is closed: the worker is stopping
        return False, {"status": "fail", "event_loop": {"ok": False, "error": str(error)}}
    try:
        return future.result(CHECK_TIMEOUT_S * (len(checks) + 1))
    except TimeoutError:
        future.cancel()
        late = "the worker's event loop did not answer in time"
        return False, {"status": "fail", "event_loop": {"ok": False, "error": late}}


@contextlib.contextmanager
def metrics_serving(options: Mapping[str, Any], checks: Mapping[str, Check]) -> Iterator[None]:
    """Serve /metrics and /healthz while the block runs, if --metrics-port was given.

    Call it from the worker's coroutine: /healthz runs `checks` on that event loop.
    """
    port = options.get("metrics_port")
    if port is None:
        yield
        return
    host = options.get("metrics_host") or DEFAULT_HOST
    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(
            host,
            port,
            _app(asyncio.get_running_loop(), checks),
            server_class=server_class,
            handler_class=_QuietHandler,
        )
    except OSError as error:
        problem = listen_problem("metrics port", host, port, error, "--metrics-port")
        raise StartupError(problem) from None
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="metrics-http")
    thread.daemon = True
    thread.start()
    logger.info("metrics: /metrics and /healthz on http://%s:%d", host, server.server_address[1])
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
