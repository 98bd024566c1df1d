"""Several hub processes of each kind in production mode, their metrics, logs and sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from tests.support import wait_until

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    """GET a URL; return the status and body (errors included), or (0, b"") when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


class Samples:
    """One scrape of a /metrics page: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in self.families.values()
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Return the sum of the samples called `name` whose labels include `labels`."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(key) == want for key, want in labels.items())
        )

    def names(self) -> set[str]:
        """Return the names of the families (counters without their _total)."""
        return set(self.families)


def scrape(url: str) -> Samples:
    """Read a /metrics page."""
    status, body = http_get(url)
    assert status == 200, f"{url} answered {status}: {body[:300]!r}"
    return Samples(body.decode())


@dataclass
class Processes:
    """Hub processes sharing one environment, each logging to a file of its own."""

    tmp: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        """Start one process, its output in <tmp>/<name>.log."""
        with (self.tmp / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                args,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_default_signals,
            )
        self.running[name] = process
        return process

    def alive(self) -> None:
        """Fail with every log when a process has exited."""
        for name, process in self.running.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.logs()}")

    def logs(self) -> str:
        """Return the tail of every process's log."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp.glob("*.log"))
        )

    def log_lines(self, name: str) -> list[str]:
        """Return one process's log lines."""
        return (self.tmp / f"{name}.log").read_text(errors="replace").splitlines()

    def terminate(self, names: Iterable[str] | None = None) -> dict[str, tuple[int, float]]:
        """SIGTERM the processes at once; return each one's exit code and seconds to exit."""
        chosen = [name for name in (names or list(self.running)) if name in self.running]
        started = time.monotonic()
        for name in chosen:
            if self.running[name].poll() is None:
                self.running[name].send_signal(signal.SIGTERM)
        result = {}
        for name in chosen:
            process = self.running[name]
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            result[name] = (process.returncode, time.monotonic() - started)
        return result


def _default_signals() -> None:
    # A shell that starts pytest in the background leaves SIGINT ignored for children.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def database_create(prefix: str) -> str:
    """Create an empty database; return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def database_drop(name: str) -> None:
    """Drop a database, cutting its connections."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def hub_run(env: dict[str, str], *args: str) -> str:
    """Run a `hub` management command to completion; return its output."""
    done = subprocess.run(
        [str(BIN / "hub"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"hub {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def owner_with_devices(env: dict[str, str], uids: Iterable[str]) -> str:
    """Create the user "owner" with these devices; return an API token of theirs."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework.authtoken.models import Token\n"
        "from devices.services import device_register\n"
        "owner = get_user_model().objects.create_user('owner', password='x')\n"
        f"for uid in {sorted(uids)!r}:\n"
        "    device_register(owner=owner, uid=uid)\n"
        "print(Token.objects.create(user=owner).key)\n"
    )
    return hub_run(env, "shell", "-c", script).strip().splitlines()[-1]


class LiveSocket:
    """A /ws/telemetry/ client subscribed to every device, collecting readings on a thread."""

    def __init__(self, http: str, token: str) -> None:
        url = http.replace("http://", "ws://") + f"/ws/telemetry/?token={token}"
        self.connection = ws_connect(url, open_timeout=10)
        self.readings: set[tuple[str, str, int]] = set()
        self.subscribed = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.connection.send(json.dumps({"type": "subscribe", "devices": "*"}))
        assert self.subscribed.wait(10), "no subscribed frame"

    def _read(self) -> None:
        try:
            for text in self.connection:
                frame: dict[str, Any] = json.loads(text)
                if frame["type"] == "subscribed":
                    self.subscribed.set()
                elif frame["type"] == "readings":
                    for reading in frame["readings"]:
                        ts = datetime.fromisoformat(reading["ts"]).timestamp()
                        self.readings.add((frame["device"], reading["metric"], round(ts * 1000)))
        except Exception:  # noqa: BLE001 - the socket closed
            pass
        finally:
            self.closed.set()

    def close(self) -> None:
        """Close the socket."""
        self.connection.close()


def base_env(**overrides: str) -> dict[str, str]:
    """Return the environment of hub subprocesses, with the venv's commands on PATH."""
    from tests.support import hub_env

    env = hub_env(**overrides)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def wait_healthy(processes: Processes, urls: Iterable[str], timeout: float = 60) -> None:
    """Wait until every URL answers 200, failing at once when a process dies."""
    pending = list(urls)

    def all_up() -> bool:
        processes.alive()
        pending[:] = [url for url in pending if http_get(url, timeout=3)[0] != 200]
        return not pending

    try:
        wait_until(all_up, timeout=timeout, interval=0.2, message="every health check")
    except AssertionError as error:
        raise AssertionError(f"{error}: {pending}\n{processes.logs()}") from None
