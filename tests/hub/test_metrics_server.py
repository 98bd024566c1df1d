"""The workers' --metrics-port: /metrics, and /healthz running the checks on the worker's loop."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from hub import metrics_server
from hub.metrics_server import metrics_serving
from hub.startup import StartupError
from tests.deploy.harness import http_get
from tests.support import free_port


async def get(url: str) -> tuple[int, bytes]:
    # The server answers /healthz by running checks on this loop: never block it.
    return await asyncio.to_thread(http_get, url)


async def test_healthz_reports_each_check_and_is_503_when_one_fails():
    connected = asyncio.Event()

    async def mqtt() -> None:
        if not connected.is_set():
            raise RuntimeError("not connected")

    async def layer() -> None:
        return None

    port = free_port()
    with metrics_serving({"metrics_port": port}, {"mqtt": mqtt, "channel_layer": layer}):
        status, body = await get(f"http://127.0.0.1:{port}/healthz")
        report = json.loads(body)
        assert status == 503 and report["status"] == "fail"
        assert report["mqtt"] == {"ok": False, "error": "RuntimeError: not connected"}
        assert report["channel_layer"]["ok"]
        connected.set()
        status, body = await get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = await get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"# TYPE hub_ingest_batches_total counter" in body
        status, _ = await get(f"http://127.0.0.1:{port}/other")
        assert status == 404
    assert (await get(f"http://127.0.0.1:{port}/metrics"))[0] == 0


async def test_healthz_fails_when_the_worker_loop_does_not_answer(monkeypatch):
    monkeypatch.setattr(metrics_server, "CHECK_TIMEOUT_S", 0.2)

    async def check() -> None:
        return None

    port = free_port()
    with metrics_serving({"metrics_port": port}, {"database": check}):
        # The request leaves from a thread at once; this loop is wedged meanwhile.
        request = asyncio.get_running_loop().run_in_executor(
            None, http_get, f"http://127.0.0.1:{port}/healthz"
        )
        time.sleep(0.8)  # noqa: ASYNC251 - a wedged event loop is the point
        status, body = await request
    assert status == 503
    assert json.loads(body)["event_loop"]["ok"] is False


async def test_a_taken_metrics_port_stops_the_worker_with_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = pytest.raises(
            StartupError,
            match=f"^metrics port {port} is in use; choose another with --metrics-port$",
        )
        with refused, metrics_serving({"metrics_port": port}, {}):
            pass


async def test_no_metrics_port_serves_nothing():
    with metrics_serving({"metrics_port": None}, {}):
        pass
