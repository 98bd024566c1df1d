"""The demo newcomers see: `hub serve --simulate` seeds the demo's rules once, and its simulator's
faults raise and clear a temperature alarm and a no-data alarm within its first minute or so."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hub.embedded import DEMO_RULES
from tests.e2e.harness import BIN, HubUnderTest, _healthy, _start, _stop_all
from tests.support import free_port, hub_env, wait_until

pytestmark = pytest.mark.e2e

# From `hub serve` answering to both alarms raised and cleared (the brief's "first minute",
# with room for a loaded machine).
DEMO_DEADLINE_S = 90


def serve(tmp: Path, name: str, *args: str, **env: str) -> HubUnderTest:
    """Start `hub serve --simulate …` and wait until it answers."""
    http, mqtt = free_port(), free_port()
    hub = HubUnderTest(
        "embedded",
        f"http://127.0.0.1:{http}",
        mqtt,
        hub_env(HUB_VAR_DIR=str(tmp / "var"), **env),
        tmp,
    )
    command = [str(BIN / "hub"), "serve", "--port", str(http), "--mqtt-port", str(mqtt), *args]
    _start(hub, name, command)
    wait_until(lambda: _healthy(hub), timeout=60, message="hub serve to answer /healthz")
    return hub


def demo_token(hub: HubUnderTest, tmp: Path) -> str:
    password = (tmp / "var" / "demo-password").read_text().strip()
    status, body = hub.request(
        "POST", "/api/v1/auth/token/", {"username": "demo", "password": password}
    )
    assert status == 200, body
    return str(body["token"])


def alarms(hub: HubUnderTest, token: str) -> list[dict[str, Any]]:
    status, body = hub.request("GET", "/api/v1/alarms/", token=token)
    assert status == 200, body
    return list(body["results"])


def test_demo_raises_and_clears_a_temperature_and_a_no_data_alarm_in_its_first_minute(
    tmp_path: Path,
) -> None:
    hub = serve(tmp_path, "serve-1", "--simulate", "3")
    try:
        answered = time.monotonic()
        token = demo_token(hub, tmp_path)
        status, rules = hub.request("GET", "/api/v1/alarm-rules/", token=token)
        assert status == 200, rules
        by_name = {rule["name"]: rule for rule in rules}
        assert set(by_name) == {rule["name"] for rule in DEMO_RULES}
        hot, silent = by_name["Too hot"], by_name["No temperature"]
        assert hot["device"] is None and silent["device"] is None
        assert (hot["condition"], hot["threshold"], hot["clear"], hot["for"]) == (
            "above",
            30.0,
            28.0,
            5,
        )
        assert (silent["condition"], silent["silence"]) == ("no_data", 10)

        def cleared(rule: dict[str, Any]) -> dict[str, Any] | None:
            for alarm in alarms(hub, token):
                if alarm["rule"] == rule["id"] and alarm["state"] == "cleared":
                    return alarm
            return None

        wait_until(
            lambda: cleared(hot) and cleared(silent),
            timeout=DEMO_DEADLINE_S - (time.monotonic() - answered),
            interval=1.0,
            message="the demo's two alarms raised and cleared",
        )
        took = time.monotonic() - answered
        found = alarms(hub, token)
        # The first device drifts hot, the second goes silent; the third stays healthy.
        assert {alarm["device"] for alarm in found if alarm["rule"] == hot["id"]} == {"sim-0001"}
        assert {alarm["device"] for alarm in found if alarm["rule"] == silent["id"]} == {"sim-0002"}
        hot_alarm = cleared(hot)
        assert hot_alarm is not None and hot_alarm["peak"] > 30, hot_alarm
        status, detail = hub.request("GET", f"/api/v1/alarms/{hot_alarm['id']}/", token=token)
        kinds = [event["kind"] for event in detail["events"]]
        assert (kinds[0], kinds[-1]) == ("raised", "cleared"), kinds
        print(f"demo: both alarms raised and cleared {took:.0f} s after /healthz answered")
        # The user makes the demo's rule their own.
        status, _ = hub.request(
            "PATCH", f"/api/v1/alarm-rules/{hot['id']}/", {"threshold": 40}, token
        )
        assert status == 200
    finally:
        _stop_all(hub)

    # A second start seeds nothing twice, and keeps a rule the user changed.
    again = serve(tmp_path, "serve-2", "--simulate", "3", HUB_DEMO_FAULTS="off")
    try:
        token = demo_token(again, tmp_path)
        status, rules = again.request("GET", "/api/v1/alarm-rules/", token=token)
        assert sorted(rule["name"] for rule in rules) == sorted(r["name"] for r in DEMO_RULES)
        assert [rule["id"] for rule in rules] == sorted([hot["id"], silent["id"]])
        assert {rule["name"]: rule["threshold"] for rule in rules}["Too hot"] == 40
    finally:
        _stop_all(again)


def test_a_malformed_demo_fault_stops_hub_serve_with_one_line_naming_the_setting(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [str(BIN / "hub"), "serve", "--simulate", "2", "--port", str(free_port())],
        env=hub_env(HUB_VAR_DIR=str(tmp_path / "var"), HUB_DEMO_FAULTS="drift-high:1,melt:1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "hub serve: HUB_DEMO_FAULTS: unknown fault 'melt': use KIND:COUNT[:EVERY[:FOR]], "
        "KIND one of drift-high, drift-low, silent"
    ), done.stderr
    assert "Traceback" not in done.stderr
