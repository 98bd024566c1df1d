"""Node-RED as the bench's peer consumer (issue 17): installed from npm, its flow written here.

Node-RED (NODE_RED_VERSION, the newest 4.x: 5.x needs Node.js ≥ 22.9) and the
`pg` driver are installed by npm into a cache folder outside git,
var/bench/node-red/ (`install`, once; again only if the pinned versions change).
The flow is generated here, never edited by hand:

- an `mqtt-broker` config node on the row's private Mosquitto, MQTT 3.1.1, a
  persistent session (clean session off, no unsubscribe on disconnect, so the
  broker queues while Node-RED is stopped, as for the hub's bridge);
- an `mqtt in` node on `devices/+/telemetry`, QoS 1, payload parsed as JSON;
- a `function` node that maps the topic's uid to the device id (read once at
  start), appends each of the message's readings to the batch and, at
  `batch` messages or 50 ms after the first, runs the hub's own statement on
  it through a `pg` pool of `pool` connections: the CTE of
  telemetry/storage/postgresql.py (STORE: insert ON CONFLICT DO NOTHING, both
  rollups, latest values), with the staging table `ingest_batch` replaced by
  `unnest()` of the batch's arrays (Node-RED has no COPY).

Node-RED acknowledges QoS 1 on arrival and queues in memory, as the naive
consumer does; readings are counted as stored in the database, not as received.

`python -m bench.load.nodered --out DIR …` writes settings.js and flows.json
into DIR; it runs with the hub's environment (DJANGO_SETTINGS_MODULE, the
row's DATABASE_URL) so that it reads STORE from the hub's code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.support.services import ROOT

NODE_RED_VERSION = "4.1.15"
PG_VERSION = "8.23.1"
CACHE = ROOT / "var" / "bench" / "node-red"
INSTALL_TIMEOUT_S = 600
FLUSH_MS = 50
TOPIC = "devices/+/telemetry"
# What the hub's STORE reads; replaced by the batch's arrays, unnested.
STAGING_SOURCE = "FROM ingest_batch"


def installed_version(cache: Path, package: str) -> str | None:
    """Return the version of an npm package installed in the cache, or None."""
    manifest = cache / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install(cache: Path = CACHE) -> Path:
    """Install the pinned Node-RED and pg into `cache` unless there; return Node-RED's red.js.

    Blocking (run it in a thread). Fails with npm's own words when npm is missing
    or the install fails (no network, registry refused, engine mismatch).
    """
    wanted = {"node-red": NODE_RED_VERSION, "pg": PG_VERSION}
    if any(installed_version(cache, name) != version for name, version in wanted.items()):
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise RuntimeError("Node-RED row: `node` and `npm` must be on PATH (Node.js ≥ 18.5)")
        cache.mkdir(parents=True, exist_ok=True)
        manifest = {"name": "hub-bench-node-red", "private": True, "dependencies": wanted}
        (cache / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--engine-strict"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"npm install of node-red@{NODE_RED_VERSION} pg@{PG_VERSION} into {cache} "
                f"failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
            )
    return cache / "node_modules" / "node-red" / "red.js"


def batch_sql(store: str, kind: int) -> str:
    """Return the hub's STORE reading the batch from four parameter arrays, not a COPY."""
    if store.count(STAGING_SOURCE) != 1:
        raise ValueError(f"the hub's STORE no longer reads `{STAGING_SOURCE}` once")
    source = (
        "FROM (SELECT d AS device_id, m AS metric, t AS ts_ms, v AS value,"
        f" NULL::text AS text, {int(kind)}::smallint AS kind"
        " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::float8[]) AS u(d, m, t, v))"
        " AS ingest_batch"
    )
    return store.replace(STAGING_SOURCE, source)


# On start: the pool, the devices' ids, an empty batch and its flush. Async: Node-RED queues
# messages until it resolves.
INITIALIZE = """
const pg = global.get("pg");
const pool = new pg.Pool({connectionString: CONFIG.url, max: CONFIG.pool});
const devices = new Map();
for (const row of (await pool.query("SELECT uid, id FROM devices_device")).rows) {
    devices.set(row.uid, Number(row.id));
}
const state = {pool, devices, messages: 0, unknown: 0, failed: 0, timer: null,
               ids: [], metrics: [], stamps: [], values: []};
state.flush = function () {
    if (state.timer !== null) { clearTimeout(state.timer); state.timer = null; }
    if (state.messages === 0) { return; }
    const params = [state.ids, state.metrics, state.stamps, state.values];
    state.ids = []; state.metrics = []; state.stamps = []; state.values = [];
    state.messages = 0;
    state.pool.query(CONFIG.sql, params).catch((error) => {
        state.failed += 1;
        node.error("batch failed: " + error.message);
    });
};
context.set("state", state);
"""
# Per message: decode (the mqtt node parsed the JSON), map the device, append, maybe flush.
FUNCTION = """
const state = context.get("state");
const id = state.devices.get(msg.topic.split("/")[1]);
if (id === undefined) { state.unknown += 1; return null; }
const ts = msg.payload.ts;
const values = msg.payload.values;
for (const metric in values) {
    state.ids.push(id); state.metrics.push(metric); state.stamps.push(ts);
    state.values.push(values[metric]);
}
state.messages += 1;
if (state.messages >= CONFIG.batch) { state.flush(); }
else if (state.timer === null) { state.timer = setTimeout(state.flush, CONFIG.flush_ms); }
return null;
"""
FINALIZE = """
const state = context.get("state");
if (state) { state.flush(); state.pool.end(); }
"""


def with_config(code: str, config: dict[str, Any]) -> str:
    """Prefix a function node's code with its constants."""
    return f"const CONFIG = {json.dumps(config)};\n{code.strip()}\n"


def flow(
    *, broker_port: int, client_id: str, database_url: str, sql: str, batch: int, pool: int
) -> list[dict[str, Any]]:
    """Return the flow: mqtt-broker config, mqtt in → function (batch + pg), one tab."""
    config = {
        "url": database_url,
        "pool": pool,
        "batch": batch,
        "flush_ms": FLUSH_MS,
        "sql": sql,
    }
    return [
        {"id": "bench-tab", "type": "tab", "label": "hub bench", "disabled": False},
        {
            "id": "bench-broker",
            "type": "mqtt-broker",
            "name": "bench broker",
            "broker": "127.0.0.1",
            "port": str(broker_port),
            "clientid": client_id,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            # A persistent session the broker keeps (and queues for) while Node-RED is away.
            "cleansession": False,
            "autoUnsubscribe": False,
            "birthTopic": "",
            "closeTopic": "",
            "willTopic": "",
        },
        {
            "id": "bench-in",
            "type": "mqtt in",
            "z": "bench-tab",
            "name": "telemetry",
            "topic": TOPIC,
            "qos": "1",
            "datatype": "json",
            "broker": "bench-broker",
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [["bench-store"]],
        },
        {
            "id": "bench-store",
            "type": "function",
            "z": "bench-tab",
            "name": "store (hub SQL)",
            "func": with_config(FUNCTION, config),
            "initialize": with_config(INITIALIZE, config),
            "finalize": with_config(FINALIZE, config),
            "outputs": 0,
            "timeout": 0,
            "noerr": 0,
            "libs": [],
            "wires": [],
        },
    ]


def settings_js(*, user_dir: Path, cache: Path, http_port: int) -> str:
    """Return settings.js: the flow file, `pg` for the function node, no editor, quiet logs."""
    pg = json.dumps(str(cache / "node_modules" / "pg"))
    return (
        "module.exports = {\n"
        f"    uiPort: {int(http_port)},\n"
        '    uiHost: "127.0.0.1",\n'
        f"    userDir: {json.dumps(str(user_dir))},\n"
        '    flowFile: "flows.json",\n'
        "    credentialSecret: false,\n"
        "    disableEditor: true,\n"
        "    httpAdminRoot: false,\n"
        "    httpNodeRoot: false,\n"
        "    externalModules: {autoInstall: false, palette: {allowInstall: false}},\n"
        f"    functionGlobalContext: {{pg: require({pg})}},\n"
        "    logging: {console: {level: 'warn', metrics: false, audit: false}},\n"
        "    telemetry: {enabled: false},\n"
        "};\n"
    )


def write(
    out: Path, *, broker_port: int, client_id: str, database_url: str, batch: int, pool: int
) -> None:
    """Write settings.js and flows.json into `out`, with the hub's STORE (Django set up here)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    from telemetry.storage.postgresql import STORE
    from telemetry.values import value_to_columns

    kind = value_to_columns(21.5)[2]  # the publisher's values are all floats
    nodes = flow(
        broker_port=broker_port,
        client_id=client_id,
        database_url=database_url,
        sql=batch_sql(STORE, int(kind)),
        batch=batch,
        pool=pool,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "flows.json").write_text(json.dumps(nodes, indent=1) + "\n")


def postgres_url(database_url: str) -> str:
    """Return a DATABASE_URL in the form `pg` takes (postgres://…)."""
    return re.sub(r"^postgresql\+?\w*://", "postgres://", database_url)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options of the flow writer."""
    parser = argparse.ArgumentParser(description="write the Node-RED row's flows.json")
    parser.add_argument("--out", type=Path, required=True, help="Node-RED's user folder")
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--batch", type=int, default=500, help="messages per INSERT batch")
    parser.add_argument("--pool", type=int, default=2, help="pg pool connections")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Write flows.json for the row's database (DATABASE_URL of the environment)."""
    args = parse_args(argv)
    write(
        args.out,
        broker_port=args.broker_port,
        client_id=args.client_id,
        database_url=postgres_url(os.environ["DATABASE_URL"]),
        batch=args.batch,
        pool=args.pool,
    )


if __name__ == "__main__":
    main()
