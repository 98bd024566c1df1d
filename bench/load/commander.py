"""The command row's client: N commands (REST or WebSocket), paced; their status frames.

One WebSocket subscribed to "*" notes when each `{"type": "command", "id",
"status"}` frame arrives. Commands go out as `POST
/api/v1/devices/{uid}/commands/` with the owner's token, round robin over the
devices, paced at --rate per second (a few worker threads, each with its own
keep-alive HTTP connection, so a slow answer does not delay the schedule).
When every command has finished on the socket (or --wait-s passed), each
device's command list is read back over REST for the hub's own timestamps
(created, sent_at, finished_at). Everything goes to --out as JSON; stdout gets
`{"reply": "ready"}` once subscribed and `{"reply": "done", …}` at the end.

With `--via ws` the commands are `{"type": "command", …}` messages on the same
socket instead; the hub answers those with the `pending` frame of the new
command, so per device the k-th command sent is the k-th `pending` frame seen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import orjson
import websockets

FINISHED = {"succeeded", "failed", "expired"}
WORKERS = 8
_local = threading.local()


def now_ms() -> float:
    """Return the wall clock in epoch milliseconds (float)."""
    return time.time_ns() / 1e6


def http_call(port: int, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Send one request on this thread's keep-alive connection; return (status, JSON body)."""
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException):
        _local.connection = None
        connection.close()
        raise
    try:
        return response.status, json.loads(payload) if payload else None
    except ValueError:
        return response.status, payload[:200].decode(errors="replace")


class Campaign:
    """The commands sent, their answers and the frames seen for them."""

    def __init__(self, args: argparse.Namespace, uids: list[str]) -> None:
        self.args = args
        self.uids = uids
        self.records: list[dict[str, Any]] = []
        self.frames: dict[str, dict[str, float]] = {}
        self.other_frames: dict[str, int] = {}
        self.readings_ms: list[float] = []
        self.sending = False
        # (device, id) of each `pending` frame in arrival order: matches WebSocket commands.
        self.pending_order: list[tuple[str, str]] = []
        self.ws: Any = None
        self.pool = ThreadPoolExecutor(max_workers=WORKERS)

    def frame(self, data: str | bytes) -> None:
        """Note the first arrival of each (command id, status); time readings frames too."""
        arrived = now_ms()
        event = orjson.loads(data)
        kind = str(event.get("type"))
        if kind != "command":
            self.other_frames[kind] = self.other_frames.get(kind, 0) + 1
            if kind == "readings" and self.sending:
                # The same socket's live readings: publish (device ts) → frame, for comparison.
                for stamp in {reading["ts"] for reading in event["readings"]}:
                    ts = datetime.fromisoformat(stamp).timestamp() * 1000
                    self.readings_ms.append(arrived - ts)
            return
        ident, status = str(event["id"]), str(event["status"])
        if status == "pending" and ident not in self.frames:
            self.pending_order.append((str(event.get("device")), ident))
        self.frames.setdefault(ident, {}).setdefault(status, arrived)

    def post(self, index: int) -> dict[str, Any]:
        """Create one command (runs in a worker thread)."""
        args = self.args
        uid = self.uids[index % len(self.uids)]
        record: dict[str, Any] = {"n": index, "uid": uid, "t_send": now_ms()}
        body = {"method": args.method, "params": json.loads(args.params), "timeout": args.timeout}
        try:
            status, answer = http_call(
                args.port, args.token, "POST", f"/api/v1/devices/{uid}/commands/", body
            )
        except (OSError, http.client.HTTPException) as error:
            status, answer = 0, f"{type(error).__name__}: {error}"
        record["t_answer"] = now_ms()
        record["http"] = status
        if status == 201 and isinstance(answer, dict):
            record["id"] = answer["id"]
            record["created_status"] = answer.get("status")
        else:
            record["error"] = str(answer)[:200]
        return record

    async def send_ws(self, index: int) -> dict[str, Any]:
        """Create one command with a WebSocket `command` message on the subscribed socket."""
        args = self.args
        uid = self.uids[index % len(self.uids)]
        record: dict[str, Any] = {"n": index, "uid": uid, "t_send": now_ms(), "http": None}
        message = {
            "type": "command",
            "device": uid,
            "method": args.method,
            "params": json.loads(args.params),
            "timeout": args.timeout,
        }
        await self.ws.send(json.dumps(message))
        return record

    async def send_all(self) -> None:
        """Send the commands on schedule; wait for every answer (REST)."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        pending: list[Any] = []
        for index in range(self.args.count):
            delay = started + index / self.args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.args.via == "ws":
                pending.append(await self.send_ws(index))
            else:
                pending.append(loop.run_in_executor(self.pool, self.post, index))
        if self.args.via == "ws":
            self.records = pending
        else:
            self.records = list(await asyncio.gather(*pending))

    def match_ws(self) -> None:
        """Give WebSocket commands their ids: per device, the k-th sent is the k-th pending."""
        if self.args.via != "ws":
            return
        ids: dict[str, list[str]] = {}
        for device, ident in self.pending_order:
            ids.setdefault(device, []).append(ident)
        sent: dict[str, int] = {}
        for record in self.records:
            k = sent.get(record["uid"], 0)
            sent[record["uid"]] = k + 1
            found = ids.get(record["uid"], [])
            if k < len(found):
                record["id"] = found[k]

    def finished(self) -> int:
        """Return how many created commands have a finished status on the socket."""
        self.match_ws()
        ids = [record["id"] for record in self.records if "id" in record]
        return sum(1 for ident in ids if FINISHED & set(self.frames.get(ident, {})))

    async def read_back(self) -> dict[str, dict[str, Any]]:
        """Return every device's commands as REST shows them, by id."""
        loop = asyncio.get_running_loop()

        def device_commands(uid: str) -> list[dict[str, Any]]:
            found, path = [], f"/api/v1/devices/{uid}/commands/"
            while path:
                status, page = http_call(self.args.port, self.args.token, "GET", path)
                if status != 200 or not isinstance(page, dict):
                    break
                found += page["results"]
                following = page.get("next")
                path = following.split("://", 1)[-1].split("/", 1)[-1] if following else ""
                path = "/" + path if path else ""
            return found

        uids = sorted({record["uid"] for record in self.records})
        lists = await asyncio.gather(
            *(loop.run_in_executor(self.pool, device_commands, uid) for uid in uids)
        )
        return {item["id"]: item for items in lists for item in items}


def emit(line: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace, uids: list[str]) -> dict[str, Any] | None:
    """Subscribe, wait for `go` on stdin, send, wait for the outcomes, read back; return all."""
    campaign = Campaign(args, uids)
    url = f"ws://127.0.0.1:{args.port}/ws/telemetry/?token={args.token}"
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "devices": "*"}))
        while orjson.loads(await ws.recv()).get("type") != "subscribed":
            pass

        async def listen() -> None:
            async for data in ws:
                campaign.frame(data)

        campaign.ws = ws
        listener = asyncio.create_task(listen())
        emit({"reply": "ready"})
        go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not go:  # the bench went away before starting
            listener.cancel()
            return None
        began = time.monotonic()
        campaign.sending = True
        await campaign.send_all()
        campaign.sending = False
        sent_s = time.monotonic() - began
        deadline = time.monotonic() + args.wait_s
        if args.via == "ws":  # ids come with the pending frames
            while campaign.finished() < len(campaign.records) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        created = sum(1 for record in campaign.records if "id" in record)
        while campaign.finished() < created and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        settled_s = time.monotonic() - began
        rest = await campaign.read_back()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    for record in campaign.records:
        ident = record.get("id")
        if ident:
            record["ws"] = campaign.frames.get(ident, {})
            record["rest"] = rest.get(ident)
    campaign.pool.shutdown(wait=False)
    return {
        "records": campaign.records,
        "other_frames": campaign.other_frames,
        "readings_frame_ms": campaign.readings_ms,
        "done": {
            "reply": "done",
            "created": created,
            "sent_s": sent_s,
            "settled_s": settled_s,
            "cpu_s": time.process_time(),
        },
    }


def run(args: argparse.Namespace) -> None:
    """Read the uids, run the campaign, write --out, then say `done`."""
    with open(args.uids) as handle:
        uids = [line.strip() for line in handle if line.strip()]
    outcome = asyncio.run(main(args, uids))
    if outcome is None:
        return
    done = outcome.pop("done")
    with open(args.out, "w") as handle:
        json.dump(outcome, handle)
    emit(done)


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--uids", required=True, help="file with one device uid per line")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="commands per second")
    parser.add_argument("--via", choices=("rest", "ws"), default="rest", help="how to send")
    parser.add_argument("--method", default="set_interval")
    parser.add_argument("--params", default='{"seconds": 1}')
    parser.add_argument("--timeout", type=int, default=30, help="each command's timeout, s")
    parser.add_argument("--wait-s", type=float, default=45.0, help="wait for outcomes at most")
    parser.add_argument("--out", required=True)
    return parser.parse_args()


if __name__ == "__main__":
    run(parse_args())
