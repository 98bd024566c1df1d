"""The fan-out row (issue 4): 200 sockets subscribed to 100 devices publishing 10 msg/s each.

Production mode: `hub bridge` + `hub ingest` + `daphne`, a private Mosquitto
with the hub's configuration, the machine's PostgreSQL and Redis. The bench's
publisher sends as the fleet's registered devices (3 metrics, device ts). The
sockets come from `bench/load/fanclients.py` processes; by default 5 % subscribe
to "*" and the rest to 1-5 devices each (seeded at random per socket), and every
socket times every message it gets. The delivered readings of a socket are
compared with the readings stored for its devices whose device ts falls in
the window. If one Daphne saturates (≥ --fanout-saturated cores), the same
clients are split over two Daphne processes and measured again: the hub fans
out per process through a Redis group per owner (telemetry/fanout.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import statistics
import time
from typing import Any

from bench.load.feed import Feed
from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.base import RowContext
from bench.rows.fleet import FleetHub, FleetSeed, Usage
from bench.support.hubenv import socket_cap
from bench.support.procs import PYTHON, Child
from bench.support.profile import py_spy_record
from bench.support.services import ROOT, Databases, broker_start

logger = logging.getLogger("bench")

CLIENT_PROCESSES = 2
READY_TIMEOUT_S = 90.0
# After the load: wait until no frame arrives for SETTLED_S (at most --fanout-settle).
SETTLED_S = 2.0
TARGET_P99_MS = 100.0
# The hub's per-socket live budgets (hub/settings), recorded beside what the sockets got.
BUDGETS = {"HUB_WS_MAX_FRAMES_PER_SECOND": "1000", "HUB_WS_MAX_BYTES_PER_SECOND": "524288"}


def row_settings(clients: int) -> dict[str, str]:
    """Return the settings this row owns (unless the caller sets them).

    All the row's sockets belong to one user, the owner of the fleet (a fleet
    page and a device page of the same account), as in every run before the
    per-user cap (HUB_WS_MAX_SOCKETS_PER_USER, default 20, closes the 21st
    socket with 4429). The cap counts per web process: raised to the row's
    socket count it refuses none, so the sockets and their load stay those of
    earlier runs; the cap costs a counter per connect and nothing per frame.
    """
    settings: dict[str, str] = {}
    socket_cap(settings, clients)
    return settings


def say(text: str) -> None:
    """Log one progress line of this row."""
    logger.info("[fanout] %s", text)


def client_specs(
    count: int, star_share: float, uids: list[str], ports: list[int], processes: int
) -> list[dict[str, Any]]:
    """Return one spec per socket: its subscription, its client process and its Daphne port.

    Each kind ("*" or a few devices) is spread evenly over processes and ports.
    """
    specs, seen = [], {"star": 0, "few": 0}
    for index in range(count):
        star = int((index + 1) * star_share) > int(index * star_share)
        rng = random.Random(index)
        devices: Any = "*" if star else sorted(rng.sample(uids, rng.randint(1, 5)))
        kind = "star" if star else "few"
        order = seen[kind]
        seen[kind] += 1
        specs.append(
            {
                "index": index,
                "devices": devices,
                "process": order % processes,
                "port": ports[(order // processes) % len(ports)],
            }
        )
    return specs


def merge_hist(parts: list[list[list[int]]]) -> dict[int, int]:
    """Merge sparse [ms, count] histograms."""
    merged: dict[int, int] = {}
    for part in parts:
        for ms, count in part:
            merged[ms] = merged.get(ms, 0) + count
    return merged


def hist_summary(bins: dict[int, int]) -> dict[str, Any]:
    """Return n, p50, p90, p99 and max (ms) of a sparse 1 ms histogram."""
    total = sum(bins.values())
    if not total:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(bins.items())
    out: dict[str, Any] = {"n": total, "max": float(ordered[-1][0])}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        rank, seen = max(1, min(total, round(fraction * total + 0.5))), 0
        for ms, count in ordered:
            seen += count
            if seen >= rank:
                out[name] = float(ms)
                break
    return out


def spread(values: list[float]) -> dict[str, float | None]:
    """Return min, median and max of per-socket figures."""
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def saturation(phase: dict[str, Any], cores: float) -> str:
    """Return why one Daphne counts as saturated (busy, behind or dropping), or ""."""
    reasons = []
    if phase["daphne_cores"] >= cores:
        reasons.append(f"{phase['daphne_cores']:.2f} cores")
    if not phase["met"]:
        reasons.append(f"p99 {phase['latency']['all']['p99']} ms > {TARGET_P99_MS:.0f}")
    if phase["capacity_drops"]:
        reasons.append(f"{phase['capacity_drops']} owner events dropped (channel full)")
    return ", ".join(reasons)


class FanoutRow:
    """Drives the fan-out measurement; one phase per Daphne count."""

    def __init__(
        self, args: Any, context: RowContext, databases: Databases, seed: FleetSeed
    ) -> None:
        self.args = args
        self.context = context
        self.databases = databases
        self.seed = seed
        self.uids = seed.uids[: args.fanout_devices]
        self.result: dict[str, Any] = {"kind": "fanout", "row": "fanout", "errors": []}
        self.hub: FleetHub | None = None
        self.feed: Feed | None = None
        self.broker: Child | None = None
        self.clients: list[Child] = []

    async def run(self) -> dict[str, Any]:
        """Start everything, measure one Daphne (and two if it saturates), stop everything."""
        args, started = self.args, time.monotonic()
        self.result["load"] = {
            "devices": len(self.uids),
            "rate_per_device": args.fanout_rate,
            "clients": args.fanout_clients,
            "star_share": args.fanout_star,
            "window_s": args.fanout_window,
            "settle_max_s": args.fanout_settle,
            "warmup_s": args.fanout_warmup,
            "profile_s": args.profile,
        }
        self.result["phases"] = []
        try:
            await self.start()
            counts = (
                [1, 2]
                if args.fanout_daphnes == "auto"
                else [int(part) for part in args.fanout_daphnes.split(",")]
            )
            for daphnes in counts:
                if daphnes > 1 and args.fanout_daphnes == "auto":
                    first = self.result["phases"][0]
                    reason = saturation(first, args.fanout_saturated)
                    self.result["saturated"] = reason
                    if not reason:
                        say(f"one Daphne kept up ({first['daphne_cores']:.2f} cores)")
                        break
                    say(f"one Daphne saturated: {reason}")
                self.result["phases"].append(await self.phase(daphnes))
        except Exception as error:
            logger.exception("[fanout] failed")
            self.result["errors"].append(f"{type(error).__name__}: {error}")
        finally:
            await self.stop()
            self.result["seconds"] = time.monotonic() - started
        return self.result

    async def start(self) -> None:
        """Broker, hub processes (one Daphne), then the publisher as the registered devices."""
        workdir = self.context.workdir
        self.broker, port = await broker_start(workdir / "fanout-mosquitto")
        settings = row_settings(self.args.fanout_clients)
        self.hub = FleetHub(
            "fanout", self.context, self.databases, self.seed, port, settings=settings
        )
        say(f"starting the hub; {len(self.uids)} devices at {self.args.fanout_rate:g} msg/s")
        await self.hub.start(daphnes=1)
        self.result["load"]["settings"] = {
            key: self.hub.env.get(key, default) for key, default in {**settings, **BUDGETS}.items()
        }
        credentials = self.seed.write_credentials(
            workdir / "fanout-credentials.jsonl", len(self.uids)
        )
        self.feed = await Feed.start(
            port, len(self.uids), "", workdir / "fanout-publisher.log", credentials
        )

    async def start_clients(self, ports: list[int]) -> list[dict[str, Any]]:
        """Start the client processes over these Daphne ports; wait until all are subscribed."""
        assert self.hub is not None
        specs = client_specs(
            self.args.fanout_clients, self.args.fanout_star, self.uids, ports, CLIENT_PROCESSES
        )
        self.clients = []
        for number in range(CLIENT_PROCESSES):
            mine = [spec for spec in specs if spec["process"] == number]
            path = self.context.workdir / f"fanout-clients-{number}-{len(ports)}.json"
            path.write_text(json.dumps(mine))
            child = await Child.start(
                f"ws-clients {number + 1}",
                [
                    PYTHON,
                    "-m",
                    "bench.load.fanclients",
                    "--token",
                    self.seed.token,
                    "--spec",
                    str(path),
                ],
                log=self.context.workdir / f"fanout-clients-{number}.log",
                control=True,
                cwd=ROOT,
            )
            self.clients.append(child)
        for child in self.clients:
            ready = await child.reply(READY_TIMEOUT_S)
            if not ready.get("ok"):
                raise RuntimeError(f"{child.name}: {ready.get('error')}")
        return specs

    async def stop_clients(self) -> None:
        """Stop the client processes."""
        for child in self.clients:
            await child.stop()
        self.clients = []

    def pids(self) -> dict[str, list[int]]:
        """Return every process to measure, by name."""
        assert self.hub is not None and self.feed is not None and self.broker is not None
        found = {name: [child.ps.pid] for name, child in self.hub.children().items()}
        for child in self.clients:
            found[child.name] = [child.ps.pid]
        found["mosquitto"] = [self.broker.ps.pid]
        found["publisher"] = [self.feed.child.ps.pid]
        found.update(self.hub.shared_pids())
        return found

    async def tell(self, **command: Any) -> list[dict[str, Any]]:
        """Send a command to every client process; return their replies."""
        for child in self.clients:
            child.send(**command)
        return [await child.reply(60) for child in self.clients]

    async def sleep_checked(self, seconds: float) -> None:
        """Sleep, failing early if a hub process or the publisher died."""
        assert self.hub is not None and self.feed is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.hub.check()
            self.feed.check()
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    async def phase(self, daphnes: int) -> dict[str, Any]:
        """Measure the fan-out with this many Daphne processes."""
        assert self.hub is not None and self.feed is not None
        args = self.args
        while len(self.hub.daphnes) < daphnes:
            await self.hub.add_daphne()
        specs = await self.start_clients(self.hub.ports[:daphnes])
        rate = args.fanout_rate * len(self.uids)
        say(f"{daphnes} Daphne: {len(specs)} sockets subscribed; offering {rate:,.0f} msg/s")
        self.feed.rate(rate)
        await self.sleep_checked(args.fanout_warmup)
        usage = Usage(self.pids)
        acked0, drops0 = self.feed.acked, self.capacity_drops()
        usage.begin()
        start_ms = time.time_ns() // 1_000_000
        await self.tell(cmd="begin", start_ms=start_ms)
        await self.sleep_checked(args.fanout_window)
        await self.tell(cmd="end", end_ms=time.time_ns() // 1_000_000)
        end_ms = time.time_ns() // 1_000_000
        cpu = usage.end()
        acked = self.feed.acked - acked0
        profile = {}
        if args.profile:
            targets = {
                name: child.ps.pid
                for name, child in self.hub.children().items()
                if name.startswith("daphne") or name == "ingest"
            }
            say(f"py-spy {', '.join(targets)} for {args.profile:g} s under the same load")
            folder = self.context.workdir / f"fanout-{daphnes}-daphne"
            folder.mkdir(exist_ok=True)
            found = await py_spy_record(targets, args.profile, folder)
            profile = {f"{daphnes} Daphne: {name}": item for name, item in found.items()}
        self.feed.rate(0)
        settle_s = await self.settle()
        reports = await self.tell(cmd="report")
        stored = await self.stored_by_device(start_ms, end_ms)
        await self.stop_clients()
        result = self.summarize(daphnes, specs, reports, stored, cpu)
        result["offered_msg_s"] = acked / cpu["window_s"]
        result["published_readings"] = acked * READINGS_PER_MESSAGE
        result["stored_readings_window"] = sum(stored.values())
        result["window_ms"] = [start_ms, end_ms]
        result["settle_s"] = settle_s
        result["capacity_drops"] = self.capacity_drops() - drops0
        if profile:
            self.result.setdefault("profile", {}).update(profile)
        say(
            f"{daphnes} Daphne: frames {result['frames_s_total']:,.0f}/s, delivered "
            f"{result['delivered_share']:.1%} of stored, p50/p99 "
            f"{result['latency']['all']['p50']}/{result['latency']['all']['p99']} ms, "
            f"Daphne {result['daphne_cores']:.2f} cores"
        )
        return result

    async def settle(self) -> float:
        """Wait until the frames stop coming after the load stopped (Daphne may lag behind)."""
        began, last, since = time.monotonic(), -1, time.monotonic()
        limit = self.args.fanout_settle
        while time.monotonic() - since < SETTLED_S and time.monotonic() - began < limit:
            await asyncio.sleep(0.5)
            counted = sum(reply["frames"] for reply in await self.tell(cmd="count"))
            if counted != last:
                last, since = counted, time.monotonic()
        return time.monotonic() - began

    def capacity_drops(self) -> int:
        """Return the owner events dropped so far for a full Daphne channel (hub logs)."""
        return self.hub.capacity_drops() if self.hub is not None else 0

    async def stored_by_device(self, start_ms: int, end_ms: int) -> dict[str, int]:
        """Return the readings stored per device uid with a device ts in the window."""
        assert self.hub is not None and self.hub.conn is not None
        # Whatever the ingest still holds lands within a second or two of the load stopping.
        await asyncio.sleep(1.0)
        cursor = await self.hub.conn.execute(
            "SELECT d.uid, count(*) FROM telemetry_reading r JOIN devices_device d"
            " ON d.id = r.device_id WHERE r.ts >= to_timestamp(%s / 1000.0)"
            " AND r.ts < to_timestamp(%s / 1000.0) GROUP BY d.uid",
            (start_ms, end_ms),
        )
        return {uid: int(count) for uid, count in await cursor.fetchall()}

    def summarize(
        self,
        daphnes: int,
        specs: list[dict[str, Any]],
        reports: list[dict[str, Any]],
        stored: dict[str, int],
        cpu: dict[str, Any],
    ) -> dict[str, Any]:
        """Return the phase's figures: frames/s, delivered share, latency, CPU and memory."""
        sockets = [sock for report in reports for sock in report["sockets"]]
        total_stored = sum(stored.values())
        kinds: dict[str, dict[str, Any]] = {}
        for kind in ("star", "few"):
            mine = [sock for sock in sockets if sock["kind"] == kind]
            expected = sum(
                total_stored
                if kind == "star"
                else sum(stored.get(uid, 0) for uid in sock["devices"])
                for sock in mine
            )
            delivered = sum(sock["readings"] for sock in mine)
            kinds[kind] = {
                "sockets": len(mine),
                "devices_each": spread(
                    [float(len(s["devices"])) for s in mine if isinstance(s["devices"], list)]
                ),
                "frames_s_total": sum(sock["frames_s"] or 0.0 for sock in mine),
                "frames_s_per_socket": spread([sock["frames_s"] or 0.0 for sock in mine]),
                "bytes_s_per_socket": spread([sock.get("bytes_s") or 0.0 for sock in mine]),
                "readings_delivered": delivered,
                "readings_expected": expected,
                "delivered_share": delivered / expected if expected else None,
                "p99_per_socket": spread([s["p99"] for s in mine if s["p99"] is not None]),
            }
        latency = {
            kind: hist_summary(merge_hist([r["hist"].get(kind, []) for r in reports]))
            for kind in ("star", "few")
        }
        latency["all"] = hist_summary(
            merge_hist([r["hist"].get(k, []) for r in reports for k in ("star", "few")])
        )
        delivered = sum(k["readings_delivered"] for k in kinds.values())
        expected = sum(k["readings_expected"] for k in kinds.values())
        daphne_cores = sum(c for n, c in cpu["cores"].items() if n.startswith("daphne"))
        other_frames: dict[str, int] = {}
        for report in reports:
            for kind, count in report["other_frames"].items():
                other_frames[kind] = other_frames.get(kind, 0) + count
        return {
            "daphnes": daphnes,
            "sockets": len(sockets),
            "closed": [s["closed"] for s in sockets if s["closed"]],
            "frames_s_total": sum(sock["frames_s"] or 0.0 for sock in sockets),
            "by_kind": kinds,
            "delivered_share": delivered / expected if expected else None,
            "readings_delivered": delivered,
            "readings_expected": expected,
            "latency": latency,
            "target_p99_ms": TARGET_P99_MS,
            "met": latency["all"]["p99"] is not None and latency["all"]["p99"] <= TARGET_P99_MS,
            "daphne_cores": daphne_cores,
            "cpu": cpu,
            "other_frames": other_frames,
            "sockets_detail": sockets,
            "specs_ports": sorted({spec["port"] for spec in specs}),
        }

    async def stop(self) -> None:
        """Stop clients, publisher, hub processes and broker."""
        await self.stop_clients()
        if self.feed is not None:
            await self.feed.child.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.broker is not None:
            await self.broker.stop()
