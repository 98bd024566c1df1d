"""The per-socket outbox and frame budget, without sockets."""

import json

import pytest

import telemetry.outbox as outbox_module
from telemetry.fanout import readings_frame
from telemetry.outbox import FrameBudget, Outbox


def part(*values: float) -> str:
    return ",".join(json.dumps({"ts": "t", "metric": "m", "value": v}) for v in values)


def test_readings_of_one_device_merge_into_one_frame():
    outbox = Outbox(max_readings=100)
    outbox.add("a", part(1), 1)
    outbox.add("b", part(9), 1)
    outbox.add("a", part(2, 3), 2)
    first = json.loads(outbox.pop())
    assert first["device"] == "a"
    assert [r["value"] for r in first["readings"]] == [1, 2, 3]
    assert json.loads(outbox.pop())["device"] == "b"
    assert not outbox and outbox.readings == 0


def test_outbox_drops_the_oldest_readings_past_its_bound():
    outbox = Outbox(max_readings=4)
    outbox.add("old", part(1, 2), 2)
    outbox.add("new", part(3, 4), 2)
    outbox.add("new", part(5), 1)
    assert outbox.readings <= 4 and outbox.dropped == 2
    assert [r["value"] for r in json.loads(outbox.pop())["readings"]] == [3, 4, 5]
    assert not outbox


def test_frame_is_valid_json_with_any_uid():
    frame = json.loads(readings_frame('we"ird\\uid', [part(1.5)]))
    assert frame == {
        "type": "readings",
        "device": 'we"ird\\uid',
        "readings": [{"ts": "t", "metric": "m", "value": 1.5}],
    }


class Clock:
    """The budget's time.monotonic, moved by the test alone.

    On the real clock a busy machine may pause the test between two calls for longer
    than the budget takes to refill (1 ms at 1000/s), and a refused take succeeds.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(outbox_module, "time", fake)
    return fake


def test_budget_allows_a_burst_then_paces(clock):
    budget = FrameBudget(rate=100, burst=3)
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    assert budget.wait() == pytest.approx(0.01)
    clock.now = 0.009
    assert not budget.take()
    clock.now = 0.01
    assert budget.take()


def test_budget_cost_above_burst_waits_for_a_full_bucket(clock):
    budget = FrameBudget(rate=1000, burst=10)
    assert budget.take(50)  # clamped to the burst
    assert not budget.take(1)
    clock.now = 0.009
    assert not budget.take(50)
    clock.now = 0.01
    assert budget.take(50)
