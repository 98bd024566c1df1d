"""What the bench runs against: a private Mosquitto, run databases, Redis key clean-up.

The broker is the hub's documented configuration (deploy/mosquitto/mosquitto.conf)
with only its listener and persistence folder changed, as tests/support.py does:
the machine's shared Mosquitto keeps Debian's default queue limits, which drop
messages for a subscriber that falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bench.support.procs import Child

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HUB_MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT_S = 20.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Return whether something accepts connections on 127.0.0.1:port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


async def wait_port(port: int, child: Child, what: str) -> None:
    """Wait until `child` listens on `port`; fail if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_open(port):
        if not child.alive:
            raise RuntimeError(f"{what} exited with {child.process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} is not listening on {port} after {START_TIMEOUT_S} s")
        await asyncio.sleep(0.05)


def broker_config(port: int, directory: Path) -> str:
    """Return the hub's Mosquitto configuration bound to this port and folder."""
    lines = [
        line
        for line in HUB_MOSQUITTO_CONF.read_text().splitlines()
        if not re.match(r"^(listener|persistence_location)\b", line)
    ]
    lines += [
        f"listener {port} 127.0.0.1",
        f"persistence_location {directory}/",
        f"log_dest file {directory}/mosquitto.log",
    ]
    return "\n".join(lines) + "\n"


async def broker_start(directory: Path) -> tuple[Child, int]:
    """Start a private Mosquitto; return it and its port."""
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    if os.geteuid() == 0:
        # Mosquitto started as root drops to its own user, which must write here.
        with contextlib.suppress(KeyError):
            pwd.getpwnam("mosquitto")
            shutil.chown(directory, "mosquitto")
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(broker_config(port, directory))
    broker = await Child.start(
        "mosquitto", ["mosquitto", "-c", str(config)], log=directory / "stderr.log"
    )
    await wait_port(port, broker, "mosquitto")
    return broker, port


class Databases:
    """PostgreSQL databases of one bench run: a migrated, seeded template and its clones."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.created: list[str] = []

    def name(self, suffix: str) -> str:
        """Return the name of one of this run's databases."""
        return f"bench_{self.run_id}_{suffix}"

    def url(self, name: str) -> str:
        """Return the DATABASE_URL of a database."""
        return f"postgres://postgres@127.0.0.1:5432/{name}"

    def _admin(self, sql: str) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql)

    def create(self, name: str, template: str | None = None) -> str:
        """Create an empty database (or a copy of `template`); return its URL."""
        self.created.append(name)
        clause = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop(self, name: str) -> None:
        """Drop one of this run's databases now (its data is large)."""
        with contextlib.suppress(psycopg.Error):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        """Drop every database this run created."""
        for name in reversed(self.created):
            with contextlib.suppress(psycopg.Error):
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


SEED = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from devices.services import device_register
user = get_user_model().objects.create_user("bench")
for index in range({devices}):
    device_register(owner=user, uid="{prefix}%04d" % index)
print("BENCH " + json.dumps({{"token": Token.objects.create(user=user).key}}))
"""


def hub_command(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run `hub <args>` with the given environment; return stdout, fail loudly."""
    done = subprocess.run(
        [str(BIN / "hub"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hub {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def database_seed(env: dict[str, str], devices: int, prefix: str) -> str:
    """Migrate, create the bench user with an API token and its devices; return the token."""
    hub_command(env, "migrate", "--noinput")
    out = hub_command(env, "shell", "-c", SEED.format(devices=devices, prefix=prefix))
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    return str(json.loads(line[len("BENCH ") :])["token"])


def redis_forget(prefix: str) -> int:
    """Delete the Redis keys of a channel-layer prefix; return how many."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        client.close()
