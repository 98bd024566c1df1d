"""Production mode under faults: kill -9 of the ingest worker, two ingest workers at once."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.alarms.e2e import Device, alarms, rule
from tests.alarms.receiver import webhook_receiver
from tests.e2e.harness import BIN, HubUnderTest, _start, now_ms, production_hub
from tests.support import Mosquitto, free_port, port_open, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def hub(tmp_path) -> Iterator[HubUnderTest]:
    broker = Mosquitto(tmp_path).start()
    try:
        with production_hub(
            tmp_path,
            mqtt_port=broker.port,
            HUB_INGEST_TIMEOUT_SECONDS="3",
            HUB_WEBHOOK_ALLOW_PRIVATE="true",
            HUB_WEBHOOK_TIMEOUT_SECONDS="3",
        ) as running:
            wait_until(lambda: "mqtt: subscribed" in running.log_text(), timeout=30)
            yield running
    finally:
        broker.stop()


def kill_ingest(hub: HubUnderTest) -> None:
    """kill -9 the ingest worker and start a new one."""
    process = hub.processes["ingest"]
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    _start(hub, "ingest", [str(BIN / "hub"), "ingest"])


def stored(hub: HubUnderTest, api: str, uid: str, metric: str, count: int) -> bool:
    status, body = hub.request(
        "GET", f"/api/v1/devices/{uid}/readings/?metric={metric}&start=0", token=api
    )
    return status == 200 and len(body["results"]) >= count


def events(hub: HubUnderTest, api: str, alarm_id: int) -> list[str]:
    status, body = hub.request("GET", f"/api/v1/alarms/{alarm_id}/", token=api)
    assert status == 200, body
    return [event["kind"] for event in body["events"]]


def test_kill_9_of_the_ingest_worker_mid_for_loses_no_pending_timer(hub: HubUnderTest):
    api = hub.user_token()
    device = Device(hub, api, "kf-1")
    rule(hub, api, device="kf-1", metric="t", condition="above", threshold=10, **{"for": 30})
    t0 = now_ms() - 120_000
    device.publish({"t": 11}, t0)
    wait_until(lambda: stored(hub, api, "kf-1", "t", 1), message="the first reading stored")
    kill_ingest(hub)
    device.publish({"t": 12}, t0 + 15_000)
    device.publish({"t": 13}, t0 + 30_000)  # 30 s of device time since t0: raises
    wait_until(lambda: alarms(hub, api), timeout=30, message="the alarm")
    [alarm] = alarms(hub, api)
    assert (alarm["value"], alarm["state"]) == (13, "active")
    assert events(hub, api, alarm["id"]) == ["raised"]
    device.close()


def test_kill_9_of_the_ingest_worker_while_storing_raises_nothing_twice(hub: HubUnderTest):
    api = hub.user_token()
    device = Device(hub, api, "kf-2")
    rule(hub, api, device="kf-2", metric="t", condition="above", threshold=10)
    t0 = now_ms() - 600_000
    values = [11 if i % 4 < 2 else 5 for i in range(120)]  # raise, stay, clear, stay, …
    for i, value in enumerate(values):
        device.publish({"t": value}, t0 + i * 1000)
        if i in (30, 75):
            kill_ingest(hub)
    wait_until(
        lambda: stored(hub, api, "kf-2", "t", len(values)), timeout=60, message="every reading"
    )
    wait_until(lambda: "ingest: consuming" in hub.log_text(), timeout=30)
    listed = alarms(hub, api)
    assert 0 < len(listed) <= 30
    starts = [alarm["started"] for alarm in listed]
    assert len(starts) == len(set(starts)), "an alarm was raised twice"
    assert sum(alarm["state"] == "active" for alarm in listed) <= 1
    for alarm in listed:
        assert events(hub, api, alarm["id"]).count("raised") == 1
    device.close()


def test_kill_9_mid_delivery_delivers_the_change_later_under_the_same_delivery_id(
    hub: HubUnderTest,
):
    api = hub.user_token()
    with webhook_receiver() as receiver:
        receiver.stall = 2.0
        status, hook = hub.request("POST", "/api/v1/webhooks/", {"url": receiver.url}, api)
        assert status == 201, hook
        device = Device(hub, api, "kf-3")
        rule(hub, api, device="kf-3", metric="t", condition="above", threshold=10)
        device.publish({"t": 50})
        wait_until(lambda: receiver.requests, timeout=20, message="the first attempt")
        kill_ingest(hub)  # while the receiver still holds the request
        receiver.stall = 0.0

        def delivered() -> list[dict]:
            _, body = hub.request("GET", f"/api/v1/webhooks/{hook['id']}/", token=api)
            return [d for d in body["deliveries"] if d["state"] == "delivered"]

        [delivery] = wait_until(delivered, timeout=40, message="the delivery after the kill")
        device.publish({"t": 1})
        wait_until(lambda: len(delivered()) == 2, timeout=20, message="the clear's delivery")
        ids = [request.body["delivery"] for request in receiver.requests]
        events = [request.body["event"] for request in receiver.requests]
    assert ids[0] == delivery["delivery"] and ids.count(ids[0]) >= 2  # at least once, same id
    assert len(set(ids)) == 2  # one delivery per change: nothing doubled
    assert events[-1] == "alarm.cleared" and set(events[:-1]) == {"alarm.raised"}
    assert delivery["attempts"] >= 2
    device.close()


def metric_value(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_ingest_workers_storing_one_device_raise_one_alarm(hub: HubUnderTest):
    api = hub.user_token()
    hub.processes["ingest"].terminate()
    hub.processes["ingest"].wait(15)
    ports = [free_port(), free_port()]
    for index, port in enumerate(ports):
        _start(hub, f"ingest{index}", [str(BIN / "hub"), "ingest", "--metrics-port", str(port)])
    for port in ports:
        wait_until(lambda port=port: port_open(port), timeout=30, message="a worker's /metrics")
    device = Device(hub, api, "kf-4")
    rule(hub, api, device="kf-4", metric="t", condition="above", threshold=10)
    t0 = now_ms() - 600_000
    batches = 'hub_ingest_batches_total{result="stored"}'
    rounds = 0
    while rounds < 20 and not all(metric_value(port, batches) >= 2 for port in ports):
        for i in range(50):
            device.client.publish(
                "devices/kf-4/telemetry",
                f'{{"ts": {t0 + rounds * 1000 + i}, "values": {{"t": 50}}}}',
                qos=1,
            )
        rounds += 1
        wait_until(
            lambda r=rounds: stored(hub, api, "kf-4", "t", r * 50), timeout=30, message="stored"
        )
    assert all(metric_value(port, batches) >= 2 for port in ports), "one worker took every batch"
    [alarm] = alarms(hub, api)
    assert events(hub, api, alarm["id"]).count("raised") == 1
    device.close()
    for index in range(2):
        process = hub.processes[f"ingest{index}"]
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
