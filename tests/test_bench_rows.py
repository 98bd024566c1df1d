"""The bench's rows: options, the alarms' rules, the Node-RED flow, issue 12's limits met.

Bench-only code (nothing of the product depends on it); these checks keep the
rows importable and their promises true without running `make bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpResponse

from bench.load.historyprobe import read_body, shape
from bench.load.httpclients import backfill_body, read_answer, single_body
from bench.load.nodered import STAGING_SOURCE, TOPIC, batch_sql, flow, settings_js
from bench.load.publisher import VARIANTS, DeviceLink, now_ms, value_tables
from bench.options import LADDER_ROWS, parse_args, plan_for
from bench.report.httpingest import http_text, hub_readings_per_s
from bench.report.peers import RULES_SHAPE, alarms_notes, nodered_notes
from bench.rows.alarms import (
    EVEN_THRESHOLD,
    ODD_CLEAR,
    ODD_THRESHOLD,
    RULE_SETS,
    live_rate,
    pair_order,
    paired_live_summary,
    paired_summary,
    rules_script,
)
from bench.rows.fanout import BUDGETS, row_settings
from bench.rows.httpingest import LIMIT_DEFAULTS, changed_settings, figures
from bench.support.hubenv import SOCKETS_PER_USER_DEFAULT, socket_cap
from bench.support.procs import Child
from bridges.mqtt.broker import EmbeddedBroker
from core.streaming import json_object_chunks, streaming_response
from hub.broker import device_check, device_lookup
from telemetry.codec.bodies import CSV_FORM, JSON_FORM, BodyDecoded, decode_body
from telemetry.http_ingest import ingest_limits
from telemetry.storage.postgresql import STORE
from tests.factories import make_device, make_user
from tests.security.mqtt import ThreadedBroker
from tests.support import async_wait_until, free_port


def test_new_rows_are_ladder_rows_with_their_options() -> None:
    args = parse_args(["--quick", "--rows", "hub,alarms,nodered"])
    assert {"alarms", "nodered"} <= set(LADDER_ROWS)
    assert args.rows == ["hub", "alarms", "nodered"]
    assert (args.alarm_devices, args.alarm_pairs) == (1000, 1)
    assert (args.nodered_batch, args.nodered_pool) == (500, 2)
    # The ladder budget grows with the rows selected: each keeps its share.
    assert args.budget == pytest.approx(3 * 1.2)
    assert plan_for(args, "alarms").budget_s == pytest.approx(1.2 * 60)
    assert plan_for(args, "nodered").drain_messages == 40_000
    full = parse_args(["--rows", "alarms", "--alarm-pairs", "3", "--nodered-batch", "100"])
    assert (full.alarm_pairs, full.nodered_batch, full.budget) == (3, 100, 3.4)


@pytest.mark.parametrize("option", ["--alarm-devices", "--nodered-batch", "--nodered-pool"])
def test_counts_below_one_are_refused(option: str) -> None:
    with pytest.raises(SystemExit):
        parse_args([option, "0"])


def test_paired_drains_alternate_abba() -> None:
    assert pair_order(1) == [False, True]
    assert pair_order(2) == [False, True, True, False]
    drains = [
        {
            "rules_enabled": flag,
            "rate": rate,
            "messages": 10,
            "exactly_once": True,
            "cpu_per_10k": {"ingest": cpu},
        }
        for flag, rate, cpu in zip(
            pair_order(2), [100.0, 90.0, 80.0, 110.0], [0.1, 0.2, 0.4, 0.3], strict=True
        )
    ]
    summary = paired_summary(drains)
    assert summary["ratio"] == pytest.approx(85.0 / 105.0)
    assert summary["exactly_once"]
    # Each process's CPU per 10 000 readings, averaged over the drains of each kind.
    assert summary["cpu_off"] == {"ingest": pytest.approx(0.2)}
    assert summary["cpu_on"] == {"ingest": pytest.approx(0.3)}


def test_paired_live_steps_offer_at_least_the_fastest_drain_without_rules() -> None:
    # A ladder held low by a noisy window: the drains tell the capacity is higher.
    assert live_rate(3_500.0, [6_100.0, 5_300.0]) == 6_100.0
    # A ladder near the capacity: 1.4 x its best is above every drain.
    assert live_rate(5_000.0, [6_100.0]) == pytest.approx(7_000.0)
    # No paired drains (--alarm-pairs 0 skips them, a --quick run may have none).
    assert live_rate(5_000.0, []) == pytest.approx(7_000.0)


def test_paired_live_steps_compare_capacities_only_when_saturated() -> None:
    def step(flag: bool, consumed: float, *, flat: bool = False) -> dict:
        return {
            "rules_enabled": flag,
            "consumed": consumed,
            "offered": 140.0,
            "flat": flat,
            "window_s": 2.0,
            "cpu_s": {"daphne": 1.0},
            "cpu_s_per_10k_readings": {"daphne": 0.1 if flag else 0.05, "gone": None},
        }

    steps = [step(f, c) for f, c in zip(pair_order(2), [100.0, 95.0, 85.0, 110.0], strict=True)]
    summary = paired_live_summary(steps, 140.0)
    assert summary["ratio"] == pytest.approx(90.0 / 105.0)
    assert summary["saturated"]
    assert summary["cpu_off"] == {"daphne": pytest.approx(0.05), "gone": 0.0}
    assert summary["cpu_on"]["daphne"] == pytest.approx(0.1)
    assert summary["steps"][0] == {
        "rules_enabled": False,
        "consumed": 100.0,
        "cores": {"daphne": 0.5},
    }
    # A step that kept up took what it was offered, not what it could take.
    steps[0] = step(False, 140.0, flat=True)
    assert not paired_live_summary(steps, 140.0)["saturated"]
    lines = alarms_notes(
        {"options": {}, "rows": {"alarms": {"paired_live": paired_live_summary(steps, 140.0)}}}
    )
    assert any("NOT SATURATED" in line and "on/off = 0.72 —" in line for line in lines), lines
    assert not any("disturbed" in line for line in lines), lines
    steps[1]["cpu_s"] = {"other (not ours)": 0.6}
    lines = alarms_notes(
        {"options": {}, "rows": {"alarms": {"paired_live": paired_live_summary(steps, 140.0)}}}
    )
    assert any("paired live" in line and "disturbed" in line for line in lines), lines


def temperatures(index: int) -> list[float]:
    """Return one device's temperatures over a full cycle of the publisher's values."""
    return [float(row[0]) for row in value_tables(index)][:VARIANTS]


def test_odd_devices_raise_and_clear_each_cycle_even_devices_never_fire() -> None:
    for index in range(1000):
        values = temperatures(index)
        if index % 2:
            assert max(values) > ODD_THRESHOLD, index
            assert min(values) < ODD_CLEAR, index
        else:
            assert max(values) <= EVEN_THRESHOLD, index
    script = rules_script()
    assert f"{ODD_THRESHOLD} if odd else {EVEN_THRESHOLD}" in script
    compile(script, "<rules>", "exec")
    assert RULES_SHAPE.keys() == RULE_SETS.keys()  # the report describes every rule set
    quiet = rules_script("quiet")
    assert f"threshold={EVEN_THRESHOLD} if odd else {EVEN_THRESHOLD}" in quiet
    assert "clear=None if odd else None" in quiet
    compile(quiet, "<rules>", "exec")


def test_flow_runs_the_hubs_statement_on_a_persistent_qos1_session(tmp_path: Path) -> None:
    sql = batch_sql(STORE, 2)
    assert STAGING_SOURCE not in sql
    assert "unnest($1::bigint[], $2::text[], $3::bigint[], $4::float8[])" in sql
    # Everything after the staging table's name is the hub's statement, unchanged.
    assert sql.endswith(STORE.split(STAGING_SOURCE, 1)[1])
    with pytest.raises(ValueError, match="ingest_batch"):
        batch_sql(STORE.replace(STAGING_SOURCE, "FROM staged"), 2)
    nodes = {
        node["type"]: node
        for node in flow(
            broker_port=1884,
            client_id="bench-x",
            database_url="postgres://postgres@127.0.0.1:5432/x",
            sql=sql,
            batch=500,
            pool=2,
        )
    }
    broker, source, store = nodes["mqtt-broker"], nodes["mqtt in"], nodes["function"]
    assert (broker["cleansession"], broker["autoUnsubscribe"], broker["port"]) == (
        False,
        False,
        "1884",
    )
    assert (source["topic"], source["qos"], source["wires"]) == (TOPIC, "1", [["bench-store"]])
    config = json.loads(store["func"].split("\n", 1)[0].removeprefix("const CONFIG = ")[:-1])
    assert (config["sql"], config["batch"], config["pool"]) == (sql, 500, 2)
    settings = settings_js(user_dir=tmp_path, cache=tmp_path / "cache", http_port=1881)
    assert json.dumps(str(tmp_path / "cache" / "node_modules" / "pg")) in settings


# --- issue 12's limits against the bench's rows (embedded, fan-out, history) ---


@pytest.mark.django_db(transaction=True)
def test_publisher_logs_in_as_the_device_and_the_embedded_broker_takes_its_publishes() -> None:
    user = make_user("bench-owner")
    uids = ["bench-0000", "bench-0001"]
    tokens = [make_device(user, uid)[1] for uid in uids]
    settings = EmbeddedBroker(
        authenticate=device_check,
        lookup=device_lookup,
        bridge_username="hub-bridge",
        bridge_password="bridge-secret",
        port=free_port(),
    )

    async def publish_once() -> list[int]:
        loop = asyncio.get_running_loop()
        links = [
            DeviceLink(uid, index, token)
            for index, (uid, token) in enumerate(zip(uids, tokens, strict=True))
        ]
        for link in links:
            await loop.create_connection(lambda link=link: link, "127.0.0.1", settings.port)
            await asyncio.wait_for(link.connack, 10)  # refused (rc 2) with another client id
            link.add(now_ms())
            link.flush()

        async def all_acked() -> bool:
            return all(link.acked >= 1 for link in links)

        with contextlib.suppress(AssertionError):
            await async_wait_until(all_acked, message="both PUBACKs")
        for link in links:
            assert link.transport is not None
            link.transport.close()
        return [link.acked for link in links]

    with ThreadedBroker(settings):
        assert asyncio.run(publish_once()) == [1, 1]


def test_fanout_row_lets_all_its_sockets_in_and_records_the_socket_budgets() -> None:
    from django.conf import settings

    assert row_settings(200) == {"HUB_WS_MAX_SOCKETS_PER_USER": "200"}
    # The names the row sets and records are the hub's, with the hub's defaults.
    assert settings.HUB["WS_MAX_SOCKETS_PER_USER"] < 200  # why the row raises it
    assert settings.HUB["WS_MAX_SOCKETS_PER_USER"] == SOCKETS_PER_USER_DEFAULT
    # The ingest rows' K clients (5 by default) keep the default; more raise it; a cap
    # the caller set is kept.
    env: dict[str, str] = {}
    socket_cap(env, 5)
    assert env == {"HUB_WS_MAX_SOCKETS_PER_USER": str(SOCKETS_PER_USER_DEFAULT)}
    env = {}
    socket_cap(env, 64)
    assert env == {"HUB_WS_MAX_SOCKETS_PER_USER": "64"}
    env = {"HUB_WS_MAX_SOCKETS_PER_USER": "3"}
    socket_cap(env, 64)
    assert env == {"HUB_WS_MAX_SOCKETS_PER_USER": "3"}
    hub_defaults = {
        "HUB_WS_MAX_FRAMES_PER_SECOND": str(settings.HUB["WS_MAX_FRAMES_PER_SECOND"]),
        "HUB_WS_MAX_BYTES_PER_SECOND": str(settings.HUB["WS_MAX_BYTES_PER_SECOND"]),
    }
    assert hub_defaults == BUDGETS
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.HUB['WS_MAX_SOCKETS_PER_USER'])",
        ],
        env={**os.environ, **row_settings(200), "DJANGO_SETTINGS_MODULE": "hub.settings"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert shown.stdout.strip() == "200"


def test_history_probe_reads_streamed_and_plain_bodies_whole() -> None:
    members = [(f"hist-{index:04d}", {"temperature": index}) for index in range(3000)]
    streamed = streaming_response(object(), json_object_chunks(members), content_type="x")
    assert streamed.streaming  # /latest/ streams: response.json() cannot read it
    body = read_body(streamed)
    assert shape("latest all", json.loads(body)) == {"devices": 3000, "values": 3000}
    plain = HttpResponse(b'{"points": [1, 2], "interval": "1h"}')
    assert shape("series", json.loads(read_body(plain))) == {"points": 2, "interval": "1h"}


def test_a_child_that_dies_before_answering_fails_the_wait_at_once(tmp_path: Path) -> None:
    script = "import sys; print('probe crashed here', file=sys.stderr); sys.exit(3)"

    async def wait_on_it() -> tuple[str, float]:
        child = await Child.start(
            "probe", [sys.executable, "-c", script], log=tmp_path / "probe.log", control=True
        )
        started = time.monotonic()
        with pytest.raises(RuntimeError) as failed:
            await child.reply(30)
        took = time.monotonic() - started
        # Every later wait fails at once too.
        with pytest.raises(RuntimeError, match="exited with code 3"):
            await child.reply(60)
        await child.stop()
        return str(failed.value), took

    message, took = asyncio.run(wait_on_it())
    assert "exited with code 3 before answering" in message
    assert "probe crashed here" in message and "probe.log" in message
    assert took < 15  # not the 30 s the wait allowed


def test_a_childs_last_reply_before_it_exits_is_still_read(tmp_path: Path) -> None:
    script = "import json; print(json.dumps({'reply': 'measured', 'n': 1}), flush=True)"

    async def read_it() -> dict[str, Any]:
        child = await Child.start("probe", [sys.executable, "-c", script], control=True)
        try:
            return await child.reply(30)
        finally:
            await child.stop()

    assert asyncio.run(read_it()) == {"reply": "measured", "n": 1}


def _ladder_row(steps: list[tuple[float, bool]]) -> dict[str, Any]:
    held = max((offered for offered, passed in steps if passed), default=0.0)
    return {
        "steps": [{"offered": offered, "passed": passed} for offered, passed in steps],
        "sustained": {"offered": held, "consumed": held, "cpu_s_per_10k_readings": {}},
    }


def test_a_comparison_of_rates_from_a_coarse_ladder_is_not_given_a_verdict() -> None:
    # The quick run that printed "hub/nodered 1.43 ✓": Node-RED held 7 452 and failed at
    # 15 992, so its rate was a lower bound and the ratio meant nothing.
    hub = _ladder_row([(10_664, True), (12_080, False)])
    results = {
        "options": {"nodered_batch": 500, "nodered_pool": 2},
        "rows": {
            "hub": hub,
            "nodered": _ladder_row([(15_992, False), (5_319, True), (7_452, True)]),
        },
    }
    [line] = [line for line in nodered_notes(results) if line.startswith("issue 17")]
    assert "msg/s = 1.43 ? (≥ 1)" in line
    assert "nodered held 7,452 msg/s and its next step failed at 15,992 offered" in line
    # A ladder that closed in on the rate gives a verdict.
    results["rows"]["nodered"] = _ladder_row([(15_992, False), (14_577, True), (17_194, False)])
    [line] = [line for line in nodered_notes(results) if line.startswith("issue 17")]
    assert "msg/s = 0.73 ✗ (≥ 1)" in line
    assert "?" not in line


def test_http_row_runs_after_the_ingest_rows_with_its_options() -> None:
    args = parse_args(["--quick", "--rows", "hub,http"])
    assert args.rows == ["hub", "http"]
    assert "http" not in LADDER_ROWS
    assert (args.http_seconds, args.http_backfill_clients) == (6.0, 4)
    assert (args.http_readings, args.http_clients) == (10_000, 100)
    # The hub row keeps its whole ladder budget: the HTTP row bounds itself.
    assert plan_for(args, "hub").budget_s == pytest.approx(1.2 * 60)
    assert parse_args(["--rows", "http"]).http_seconds == 20.0
    with pytest.raises(SystemExit):
        parse_args(["--rows", "http", "--http-clients", "0"])


def test_http_row_bodies_fit_the_hubs_default_limits_and_are_stored_whole() -> None:
    from django.conf import settings

    # The defaults the row prints and compares with are the hub's.
    hub = settings.HUB
    assert {
        "HUB_HTTP_INGEST_MAX_BYTES": str(hub["HTTP_INGEST_MAX_BYTES"]),
        "HUB_HTTP_INGEST_MAX_READINGS": str(hub["HTTP_INGEST_MAX_READINGS"]),
        "HUB_HTTP_INGEST_TIMEOUT_SECONDS": str(hub["HTTP_INGEST_TIMEOUT_SECONDS"]),
        "HUB_THROTTLE_DEVICE_INGEST": hub["THROTTLE_DEVICE_INGEST"],
    } == LIMIT_DEFAULTS
    # The row keeps the defaults; a limit set in the environment is named as changed.
    assert changed_settings(dict(LIMIT_DEFAULTS)) == {}
    assert changed_settings({**LIMIT_DEFAULTS, "HUB_THROTTLE_DEVICE_INGEST": "off"}) == {
        "HUB_THROTTLE_DEVICE_INGEST": {"default": "600/min", "used": "off"}
    }
    now = now_ms()
    base = now - 20 * 86_400_000
    body, following = backfill_body(base, 1000, 10_000)
    assert len(body) <= hub["HTTP_INGEST_MAX_BYTES"]
    decoded = decode_body("dev-1", body, CSV_FORM, now_ms=now, limits=ingest_limits())
    assert isinstance(decoded, BodyDecoded), decoded
    assert decoded.rejected == []
    assert len(decoded.readings) == 10_000
    keys = {(reading.metric, reading.ts) for reading in decoded.readings}
    assert len(keys) == 10_000  # each reading counted once
    # The next body starts after this one's last timestamp: none collides.
    assert max(reading.ts for reading in decoded.readings) < following
    one = decode_body("dev-1", single_body(now, 0), JSON_FORM, now_ms=now, limits=ingest_limits())
    assert isinstance(one, BodyDecoded), one
    assert len(one.readings) == 1


def test_http_clients_read_sized_and_chunked_answers_on_a_kept_connection() -> None:
    async def answers() -> list[tuple[int, bytes, bool]]:
        reader = asyncio.StreamReader()
        reader.feed_data(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
            b'{"stored": 1}'
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nbusy\r\n1\r\n!\r\n0\r\n\r\n"
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        return [await read_answer(reader) for _ in range(3)]

    assert asyncio.run(answers()) == [
        (200, b'{"stored": 1}', True),
        (503, b"busy!", True),
        (429, b"", False),
    ]


def _http_phase(rows: int, sent: int, wall: float, cores: float) -> dict[str, Any]:
    done = {
        "wall_s": wall,
        "requests": sent // 10_000,
        "statuses": {"200": sent // 10_000},
        "errors": {},
        "readings_sent": sent,
        "readings_ok": sent,
        "answered": {"stored": sent, "duplicates": 0, "rejected": 0},
        "latency_ms": {"n": 2, "p50": 1000.0, "p90": 1100.0, "p99": 1200.0, "max": 1200.0},
        "body_bytes_max": 292_000,
        "requests_busiest_client": 6,
    }
    counted = {"rows": rows, "distinct": rows}
    cpu = {
        "window_s": 8.0,
        "cores": {"daphne 1": cores, "ingest": 0.5},
        "machine_busy_cores": 1.0,
        "other_cores": 0.0,
    }
    return {"clients": 4, "done": done, "counted": counted, "cpu": cpu}


def test_http_row_figures_and_section_from_a_recorded_result() -> None:
    phase = _http_phase(rows=240_000, sent=240_000, wall=8.0, cores=0.25)
    phase.update(figures(phase["done"], phase["counted"], phase["cpu"]))
    assert phase["readings_per_s"] == pytest.approx(30_000)
    assert phase["exactly_once"] is True
    # 0.25 cores x 8 s = 2 CPU s for 240 000 readings.
    assert phase["cpu_s_per_10k"]["daphne 1"] == pytest.approx(2 / 24)
    assert phase["cpu_s_per_10k"]["ingest"] == pytest.approx(4 / 24)
    short = _http_phase(rows=239_999, sent=240_000, wall=8.0, cores=0.25)
    assert figures(short["done"], short["counted"], short["cpu"])["exactly_once"] is False
    row = {
        "kind": "http",
        "seconds": 30.0,
        "errors": [],
        "load": {
            "settings": {**LIMIT_DEFAULTS, "HUB_THROTTLE_DEVICE_INGEST": "off"},
            "changed": changed_settings({**LIMIT_DEFAULTS, "HUB_THROTTLE_DEVICE_INGEST": "off"}),
        },
        "phases": {"backfill": phase},
    }
    hub = {"sustained": {"consumed": 20_000.0}, "drain": {"rate": 30_000.0}}
    assert hub_readings_per_s({"rows": {"hub": hub, "http": row}}) == pytest.approx(60_000)
    text = "\n".join(http_text(row, 2, hub))
    changed = (
        "HUB_THROTTLE_DEVICE_INGEST off (CHANGED in the environment; the hub's default: 600/min)"
    )
    assert "settings: " + changed in text
    kept = "the hub's defaults: HUB_HTTP_INGEST_MAX_BYTES 1048576, "
    kept += "HUB_HTTP_INGEST_MAX_READINGS 10000, HUB_HTTP_INGEST_TIMEOUT_SECONDS 30.0\n"
    assert kept in text
    assert "10,000 rd CSV, 285 KiB" in text
    assert "240,000 / 240,000" in text and "✓" in text
    assert "= 60,000 readings/s sustained; HTTP/MQTT readings/s: backfill 0.50" in text
    slow = dict(phase, readings_per_s=106.0)
    slow_text = "\n".join(http_text({**row, "phases": {"single": slow}}, 2, hub))
    assert "HTTP/MQTT readings/s: single 0.0018" in slow_text
    # 6 requests in 8 s; 4 clients at 3 requests/s wait 1 333 ms each (Little's law).
    assert (
        "busiest device 0.8 requests/s (HUB_THROTTLE_DEVICE_INGEST's default 600/min: the" in text
    )
    assert "latency ≈ clients ÷ requests/s = 1,333.3 ms" in text
    fast = dict(phase, done={**phase["done"], "requests_busiest_client": 81})
    assert "10.1 requests/s (HUB_THROTTLE_DEVICE_INGEST's default 600/min: above" in "\n".join(
        http_text({**row, "phases": {"backfill": fast}}, 2, hub)
    )
    alone = "\n".join(http_text(row, 2, None))
    assert "not run this time, no ratio" in alone
    # A hub row whose ladder held no step has no sustained rate: no ratio, its drain named.
    held_none = "\n".join(http_text(row, 2, {"sustained": None, "drain": {"rate": 30_000.0}}))
    assert "no sustained rate, no ratio (its burst drained at 30,000 msg/s = 90,000" in held_none
    assert "HTTP/MQTT" not in held_none
