"""Redis with a password, and over TLS: the hub's channel layer works with the right credentials
and says in one line per attempt what is wrong without them.

Each case runs the real `hub bridge` (a Redis client of the hub that needs no database)
against a private redis-server and a private Mosquitto, and reads its /healthz, whose
channel-layer check is a round trip through Redis.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.hub.test_settings import run_hub
from tests.support import free_port, hub_env, port_open, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]
ATTEMPT = re.compile(r"WARNING hub\.dependencies: bridge: (.*); retrying in [0-9.]+ s$")


class RedisServer:
    """A private redis-server requiring PASSWORD (and an ACL user `hub`), plain or TLS only."""

    def __init__(self, directory: Path, *, tls: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        args = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(directory), "--requirepass", PASSWORD]
        args += ["--user", "default", "on", f">{PASSWORD}", "~*", "&*", "+@all"]
        args += ["--user", "hub", "on", f">{PASSWORD}", "~*", "&*", "+@all"]
        self.ca_file: Path | None = None
        if tls:
            ca = trustme.CA()
            server = ca.issue_cert("localhost", "127.0.0.1")
            self.ca_file = directory / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
            server.private_key_pem.write_to_path(str(directory / "server.key"))
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(directory / "server.pem")]
            args += ["--tls-key-file", str(directory / "server.key")]
            args += ["--tls-ca-cert-file", str(self.ca_file)]
        else:
            args += ["--port", str(self.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), message=f"redis-server on {self.port}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def redis_plain(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(_folder(tmp_path / "redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_tls(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(_folder(tmp_path / "redis-tls"), tls=True)
    yield server
    server.stop()


class Bridge:
    """`hub bridge --metrics-port` with a REDIS_URL; stderr in a file."""

    def __init__(self, tmp: Path, mqtt_url: str, redis_url: str, **env: str) -> None:
        self.metrics_port = free_port()
        self.log = tmp / f"bridge-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub", "bridge", "--metrics-port", str(self.metrics_port)],
                env=hub_env(
                    MQTT_URL=mqtt_url,
                    REDIS_URL=redis_url,
                    SECRET_KEY="x",
                    HUB_VAR_DIR=str(tmp / "var"),
                    HUB_MQTT_CLIENT_ID="redis-" + uuid.uuid4().hex[:8],
                    **env,
                ),
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    def healthz(self) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def attempts(self) -> list[str]:
        return [match.group(1) for line in self.lines() if (match := ATTEMPT.search(line))]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _healthy(bridge: Bridge) -> None:
    try:
        wait_until(lambda: bridge.healthz()[0] == 200, timeout=60, message="/healthz 200")
    finally:
        code = bridge.stop()
    assert code == 0, bridge.lines()
    assert bridge.attempts() == [], bridge.lines()


def _refused(bridge: Bridge, expected: str) -> None:
    try:
        wait_until(lambda: len(bridge.attempts()) >= 2, timeout=60, message="two attempts")
        status, body = bridge.healthz()
        assert status == 503, body
    finally:
        code = bridge.stop()
    assert code == 0, bridge.lines()
    assert set(bridge.attempts()) == {expected}, bridge.lines()
    assert not [line for line in bridge.lines() if "Traceback" in line], bridge.lines()


def test_layer_with_the_password_in_redis_url_works(tmp_path, mosquitto, redis_plain):
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_plain.port}/0"
    _healthy(Bridge(tmp_path, mosquitto.url, url))


def test_layer_without_the_password_says_so_once_per_attempt(tmp_path, mosquitto, redis_plain):
    where = f"127.0.0.1:{redis_plain.port}"
    bridge = Bridge(tmp_path, mosquitto.url, f"redis://{where}/0")
    _refused(
        bridge,
        f"Redis at {where} refused the hub (REDIS_URL): authentication required; give the "
        "password as redis://:password@host (or rediss://user:password@host)",
    )


def test_layer_with_a_wrong_password_says_so_once_per_attempt(tmp_path, mosquitto, redis_plain):
    where = f"127.0.0.1:{redis_plain.port}"
    bridge = Bridge(tmp_path, mosquitto.url, f"redis://:wrong@{where}/0")
    _refused(
        bridge,
        f"Redis at {where} refused the hub (REDIS_URL): invalid username-password pair or "
        "user is disabled; give the password as redis://:password@host (or "
        "rediss://user:password@host)",
    )


def test_layer_over_tls_with_user_and_password_and_the_ca_file_works(
    tmp_path, mosquitto, redis_tls
):
    url = f"rediss://hub:{PASSWORD}@localhost:{redis_tls.port}/0"
    _healthy(Bridge(tmp_path, mosquitto.url, url, HUB_REDIS_CA_FILE=str(redis_tls.ca_file)))


def test_layer_over_tls_without_the_ca_file_refuses_the_certificate(tmp_path, mosquitto, redis_tls):
    url = f"rediss://hub:{PASSWORD}@localhost:{redis_tls.port}/0"
    bridge = Bridge(tmp_path, mosquitto.url, url)
    try:
        wait_until(lambda: len(bridge.attempts()) >= 2, timeout=60, message="two attempts")
    finally:
        assert bridge.stop() == 0, bridge.lines()
    for attempt in bridge.attempts():
        assert attempt.startswith(
            f"cannot reach Redis at localhost:{redis_tls.port} over TLS "
            "(REDIS_URL, HUB_REDIS_CA_FILE): "
        ), bridge.lines()
        assert "certificate verify failed" in attempt


def test_plain_redis_url_to_a_tls_only_redis_does_not_get_through(tmp_path, mosquitto, redis_tls):
    bridge = Bridge(tmp_path, mosquitto.url, f"redis://:{PASSWORD}@127.0.0.1:{redis_tls.port}/0")
    try:
        wait_until(lambda: len(bridge.attempts()) >= 2, timeout=60, message="two attempts")
        assert bridge.healthz()[0] == 503
    finally:
        assert bridge.stop() == 0, bridge.lines()
    assert all("(REDIS_URL)" in attempt for attempt in bridge.attempts()), bridge.lines()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"REDIS_URL": "rediss://127.0.0.1:6380/0", "HUB_REDIS_CA_FILE": "/nonexistent.pem"},
            "HUB_REDIS_CA_FILE: no such file: /nonexistent.pem",
        ),
        (
            {"REDIS_URL": "redis://127.0.0.1:6379/0", "HUB_REDIS_CA_FILE": __file__},
            "HUB_REDIS_CA_FILE: not a PEM CA certificate",
        ),
    ],
)
def test_unusable_redis_ca_file_stops_start_up_with_one_line(tmp_path, env, problem):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path), SECRET_KEY="x", **env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert problem in done.stderr


def test_ca_file_without_a_tls_url_stops_start_up_with_one_line(tmp_path, redis_tls):
    done = run_hub(
        "check",
        HUB_VAR_DIR=str(tmp_path),
        SECRET_KEY="x",
        REDIS_URL="redis://127.0.0.1:6379/0",
        HUB_REDIS_CA_FILE=str(redis_tls.ca_file),
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hub: configuration error: HUB_REDIS_CA_FILE: set, but REDIS_URL has no rediss:// (TLS) URL"
    )


@pytest.mark.parametrize(
    ("redis_url", "warned"),
    [
        ("redis://redis.example:6379/0", True),
        ("redis://:pw@redis.example:6379/0,redis://redis-2.example:6379/0", True),
        ("redis://:pw@redis.example:6379/0", False),
        ("rediss://hub:pw@redis.example:6380/0", False),
        ("unix:///run/redis/redis.sock", False),
    ],
)
def test_check_deploy_warns_about_a_redis_reached_without_password(tmp_path, redis_url, warned):
    done = run_hub(
        "check",
        "--deploy",
        HUB_VAR_DIR=str(tmp_path),
        SECRET_KEY="x" * 60,
        REDIS_URL=redis_url,
    )
    assert ("hub.W001" in done.stderr) is warned, done.stderr


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
