"""Time the history API in-process: Django's test client against the hub's production settings.

Server time here is the whole Django request inside this process (middleware,
token authentication, the DRF view, its SQL, JSON rendering), measured with
perf_counter around `Client.get` and the reading of its whole body; no HTTP
server or socket is involved. Bodies that stream (`/latest/` and the other
lists) do their SQL and rendering while they are read, so the body is read
inside the timed span, as it was rendered inside `Client.get` before they
streamed. The
time spent inside the database driver's `execute` (Django's execute_wrapper)
and in Python's cyclic garbage collector (gc.callbacks) is measured too, so
SQL, Python and collector pauses can be told apart.

The queries are interleaved round robin, after a few warm-up requests each.
Output: one JSON line `{"queries": {name: {...}}}`. With `--loop NAME
--seconds S` it instead says `{"reply": "ready"}` and repeats that one query
for S seconds (for py-spy).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

WARMUP = 5


def queries(args: argparse.Namespace, uids: list[str]) -> dict[str, Callable[[], str]]:
    """Return each query's URL builder (series ranges end at the moment of the request)."""
    days_ms = args.days * 86_400_000
    series = f"/api/v1/devices/{uids[0]}/series/?metric=temperature"

    def ranged(extra: str) -> Callable[[], str]:
        def url() -> str:
            now = time.time_ns() // 1_000_000
            return f"{series}&start={now - days_ms}&end={now}&{extra}"

        return url

    # Spread over the fleet, not its first ones.
    some = ",".join(uids[:: max(1, len(uids) // args.some)][: args.some])
    return {
        "series 30d interval=1h": ranged("interval=1h"),
        "series 30d points=500": ranged("points=500"),
        f"latest all {len(uids)} devices": lambda: "/api/v1/latest/",
        f"latest ?devices= {min(args.some, len(uids))}": lambda: f"/api/v1/latest/?devices={some}",
    }


def read_body(response: Any) -> bytes:
    """Return a response's whole body, streamed or not, and close the response."""
    try:
        if response.streaming:
            return b"".join(
                chunk if isinstance(chunk, bytes) else str(chunk).encode()
                for chunk in response.streaming_content
            )
        return bytes(response.content)
    finally:
        response.close()


def shape(name: str, body: Any) -> dict[str, Any]:
    """Return what a response held (buckets, devices), to show the work was done."""
    if name.startswith("series"):
        return {"points": len(body.get("points", [])), "interval": body.get("interval")}
    return {
        "devices": len(body),
        "values": sum(len(values) for values in body.values() if isinstance(values, dict)),
    }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, Any]:
    """Return n, mean, p50, p90, p99 and max."""
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered) if ordered else None,
        "p50": percentile(ordered, 0.5),
        "p90": percentile(ordered, 0.9),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else None,
    }


def main(args: argparse.Namespace) -> None:
    """Set Django up, then measure (or loop for a profile)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    import django

    django.setup()
    from hub.heap import heap_settle

    heap_settle()  # as hub/asgi.py does in Daphne
    from django.db import connection
    from django.test import Client

    with open(args.uids) as handle:
        uids = [line.strip() for line in handle if line.strip()]
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {args.token}")
    urls = queries(args, uids)
    sql_s = [0.0]
    # Time in Python's cyclic garbage collector during each request, by generation.
    gc_s, gc_started, gc_full = [0.0], [0.0], [0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_s[0] += time.perf_counter() - gc_started[0]
            gc_full[0] += info.get("generation") == 2

    gc.callbacks.append(on_gc)

    def timed_sql(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_s[0] += time.perf_counter() - started

    def one(name: str) -> tuple[float, float, Any, bytes]:
        sql_s[0] = gc_s[0] = 0.0
        url = urls[name]()
        with connection.execute_wrapper(timed_sql):
            started = time.perf_counter()
            response = client.get(url)
            body = read_body(response)
            elapsed = time.perf_counter() - started
        return elapsed * 1000, sql_s[0] * 1000, response, body

    if args.loop:
        name = next(n for n in urls if n.startswith(args.loop))
        for _ in range(WARMUP):
            one(name)
        print(json.dumps({"reply": "ready"}), flush=True)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            one(name)
        return
    results: dict[str, dict[str, Any]] = {
        name: {"ms": [], "sql_ms": [], "gc_ms": [], "status": {}} for name in urls
    }
    full_gcs = dict.fromkeys(urls, 0)
    for name in urls:
        for _ in range(WARMUP):
            _, _, response, body = one(name)
        ok = response.status_code == 200
        results[name]["shape"] = shape(name, json.loads(body)) if ok else {}
        results[name]["bytes"] = len(body)
    for _ in range(args.requests):
        for name in urls:
            full = gc_full[0]
            ms, sql_ms, response, _ = one(name)
            item = results[name]
            item["ms"].append(ms)
            item["sql_ms"].append(sql_ms)
            item["gc_ms"].append(gc_s[0] * 1000)
            full_gcs[name] += gc_full[0] - full
            code = str(response.status_code)
            item["status"][code] = item["status"].get(code, 0) + 1
    out = {
        name: {
            **summary(item["ms"]),
            "sql": summary(item["sql_ms"]),
            "gc": summary(item["gc_ms"]),
            "gc_full_collections": full_gcs[name],
            # The three slowest requests: (ms, of which in the garbage collector).
            "slowest_gc_ms": sorted(zip(item["ms"], item["gc_ms"], strict=True))[-3:],
            "status": item["status"],
            "shape": item["shape"],
            "bytes": item["bytes"],
            "samples_ms": [round(value, 3) for value in item["ms"]],
        }
        for name, item in results.items()
    }
    print(json.dumps({"reply": "measured", "queries": out}), flush=True)


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument(
        "--uids", required=True, help="the owner's device uids, series device first"
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--some", type=int, default=100, help="devices of the ?devices= query")
    parser.add_argument("--requests", type=int, default=200, help="per query")
    parser.add_argument("--loop", help="repeat the query whose name starts with this")
    parser.add_argument("--seconds", type=float, default=10.0)
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
    sys.exit(0)
