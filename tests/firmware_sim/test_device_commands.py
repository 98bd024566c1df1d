"""Commands through the machine's Mosquitto: each method's reply and effect, and refusals."""

from __future__ import annotations

import itertools
import json
import statistics

import pytest

from firmware_sim import FleetConfig, device, numbered_identities, sensors
from tests.firmware_sim.helpers import (
    Received,
    Watcher,
    readings,
    replies,
    running_fleet,
    send_command,
    ts_of,
    watching,
)

pytestmark = pytest.mark.services


def _one_device(prefix: str, rate: float) -> tuple[FleetConfig, str]:
    config = FleetConfig(identities=numbered_identities(1, prefix), rate=rate)
    return config, config.identities[0].uid


def _says_online(watcher: Watcher, uid: str) -> bool:
    statuses = watcher.on(f"devices/{uid}/status")
    return bool(statuses) and statuses[-1].payload == b"online"


def _temperature(message: Received) -> float:
    value = json.loads(message.payload)["values"]["temperature"]
    assert isinstance(value, float)
    return value


def _reply_message(watcher: Watcher, uid: str, command_id: str) -> Received:
    (reply,) = watcher.on(f"devices/{uid}/commands/{command_id}/reply")
    return reply


def _median_gap_ms(stamps: list[int]) -> float:
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


async def test_set_interval_replies_and_changes_the_rate_at_once(prefix: str) -> None:
    config, uid = _one_device(prefix, rate=0.2)  # one reading every 5 s
    async with watching([f"devices/{uid}/#"]) as watcher, running_fleet(config):
        await watcher.wait_for(lambda w: _says_online(w, uid))
        await send_command(uid, "fast", {"method": "set_interval", "params": {"seconds": 0.05}})
        await watcher.wait_for(lambda w: bool(replies(w, uid, "fast")))
        fast_from = _reply_message(watcher, uid, "fast").wall * 1000
        # Not at the next slot of the old schedule (up to 5 s away): from now on.
        await watcher.wait_for(
            lambda w: sum(ts_of(m) > fast_from for m in readings(w, uid)) >= 20, timeout=3
        )
        await send_command(uid, "slow", {"method": "set_interval", "params": {"seconds": 0.5}})
        await watcher.wait_for(lambda w: bool(replies(w, uid, "slow")))
        slow_from = _reply_message(watcher, uid, "slow").wall * 1000
        await watcher.wait_for(
            lambda w: sum(ts_of(m) > slow_from for m in readings(w, uid)) >= 5, timeout=5
        )
    assert replies(watcher, uid, "fast") == [{"ok": True, "result": {"seconds": 0.05}}]
    assert replies(watcher, uid, "slow") == [{"ok": True, "result": {"seconds": 0.5}}]
    stamps = [ts_of(m) for m in readings(watcher, uid)]
    fast = [ts for ts in stamps if fast_from < ts < slow_from - 100]
    slow = [ts for ts in stamps if ts > slow_from]
    assert 40 <= _median_gap_ms(fast) <= 60
    assert 450 <= _median_gap_ms(slow) <= 550


async def test_set_setpoint_moves_the_temperature_gradually_towards_the_value(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensors, "SETPOINT_TIME_S", 0.5)
    config, uid = _one_device(prefix, rate=20)
    async with watching([f"devices/{uid}/#"]) as watcher, running_fleet(config):
        await watcher.wait_for(lambda w: len(readings(w, uid)) >= 5)
        await send_command(uid, "warm", {"method": "set_setpoint", "params": {"value": 60}})
        await watcher.wait_for(lambda w: bool(replies(w, uid, "warm")))
        await watcher.wait_for(
            lambda w: len([m for m in readings(w, uid) if _temperature(m) > 57]) >= 5
        )
    assert replies(watcher, uid, "warm") == [{"ok": True, "result": {"value": 60.0}}]
    since = _reply_message(watcher, uid, "warm").wall * 1000
    before = [_temperature(m) for m in readings(watcher, uid) if ts_of(m) < since - 100]
    after = [_temperature(m) for m in readings(watcher, uid) if ts_of(m) > since]
    assert all(15 < t < 27 for t in before)
    assert after[0] < 40  # 50 ms into a 0.5 s approach: not there yet
    assert len([t for t in after if 30 < t < 55]) >= 3  # passing through, reading by reading
    assert all(abs(t - 60) < 3 for t in after[-5:])


async def test_reboot_replies_goes_offline_and_comes_back_with_the_readings_it_took(
    prefix: str, monkeypatch: pytest.MonkeyPatch, produced: list[bytes]
) -> None:
    monkeypatch.setattr(device, "REBOOT_S", 1.5)
    config, uid = _one_device(prefix, rate=20)
    status = f"devices/{uid}/status"

    def back_online(w: Watcher) -> bool:
        after_reply = w.received[w.received.index(_reply_message(w, uid, "r1")) :]
        statuses = [m.payload for m in after_reply if m.topic == status]
        return statuses[:2] == [b"offline", b"online"]

    async with watching([f"devices/{uid}/#"]) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: len(readings(w, uid)) >= 5)
        await send_command(uid, "r1", {"method": "reboot", "params": {}})
        await watcher.wait_for(lambda w: bool(replies(w, uid, "r1")))
        await watcher.wait_for(lambda w: w.on(status)[-1].payload == b"offline")
        # Retained: whoever subscribes during the reboot learns that the device is offline.
        async with watching([status]) as late:
            await late.wait_for(lambda w: bool(w.on(status)))
        assert [(m.payload, m.retain) for m in late.on(status)] == [(b"offline", True)]
        await watcher.wait_for(back_online, timeout=10)
        # Subscribed again after the reconnect: commands are answered as before.
        await send_command(uid, "r2", {"method": "set_setpoint", "params": {"value": 22}})
        await watcher.wait_for(lambda w: bool(replies(w, uid, "r2")))
        taken = set(produced)
        await watcher.wait_for(lambda w: taken <= {m.payload for m in readings(w, uid)})
        assert (fleet.stats.connects, fleet.stats.errors) == (2, 0)
    assert replies(watcher, uid, "r1") == [{"ok": True, "result": None}]
    events = watcher.received
    reply_at = events.index(_reply_message(watcher, uid, "r1"))
    offline_at = next(i for i in range(reply_at, len(events)) if events[i].topic == status)
    online_at = next(i for i in range(offline_at + 1, len(events)) if events[i].topic == status)
    assert events[online_at].payload == b"online"
    assert 1.4 < events[online_at].at - events[offline_at].at < 5
    assert not [m for m in events[offline_at:online_at] if m.topic.endswith("/telemetry")]
    # The readings taken while away came after "online", with the time of their taking.
    away = (events[offline_at].wall * 1000, events[online_at].wall * 1000)
    taken_away = [m for m in readings(watcher, uid) if away[0] < ts_of(m) < away[1]]
    assert len(taken_away) >= 20
    assert all(events.index(m) > online_at for m in taken_away)
    stamps = [ts_of(m) for m in readings(watcher, uid)]
    assert stamps == sorted(set(stamps))  # in order, none twice


async def test_an_unknown_method_and_bad_payloads_get_failed_replies(prefix: str) -> None:
    config, uid = _one_device(prefix, rate=1)
    sent: dict[str, object] = {
        "c1": {"method": "dance", "params": {}},
        "c2": b"{not json",
        "c3": {"method": "set_interval", "params": {"seconds": 0}},
        "c4": {"method": "set_setpoint", "params": {"value": "hot"}},
    }
    async with watching([f"devices/{uid}/#"]) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: _says_online(w, uid))
        for command_id, body in sent.items():
            await send_command(uid, command_id, body)
        await watcher.wait_for(lambda w: all(replies(w, uid, c) for c in sent))
    assert replies(watcher, uid, "c1") == [{"ok": False, "error": "unknown method 'dance'"}]
    for command_id, error in [
        ("c2", "payload is not JSON"),
        ("c3", '"seconds" must be from 0.01 to 3600, not 0'),
        ("c4", '"value" must be a number, not "hot"'),
    ]:
        (reply,) = replies(watcher, uid, command_id)
        assert isinstance(reply, dict)
        assert reply["ok"] is False
        assert error in reply["error"]
    assert fleet.stats.commands == 4
    # Nothing but replies from the device under commands/: its own replies are not commands.
    assert not [m for m in watcher.received if m.topic.endswith("/reply/reply")]


async def test_a_command_id_answered_already_is_not_answered_again(prefix: str) -> None:
    config, uid = _one_device(prefix, rate=1)
    async with watching([f"devices/{uid}/#"]) as watcher, running_fleet(config) as fleet:
        await watcher.wait_for(lambda w: _says_online(w, uid))
        await send_command(uid, "once", {"method": "set_setpoint", "params": {"value": 30}})
        await watcher.wait_for(lambda w: bool(replies(w, uid, "once")))
        await send_command(uid, "once", {"method": "set_setpoint", "params": {"value": 30}})
        await send_command(uid, "later", {"method": "reboot", "params": {"now": True}})
        # Commands are answered in order: once "later" is, the repeat has been dealt with.
        await watcher.wait_for(lambda w: bool(replies(w, uid, "later")))
    assert replies(watcher, uid, "once") == [{"ok": True, "result": {"value": 30.0}}]
    assert fleet.stats.commands == 2
