"""Read compose.yaml as Docker Compose would, and turn its hub services into local processes.

No Docker engine runs here, so the test starts each service's command with its
environment as a plain process. What a container would reach by service name
(db, redis, mosquitto) is the machine's PostgreSQL, a private Redis with the
password from .env and a private Mosquitto; ports inside containers (8000, 9100)
become free local ports, and named volumes become folders. Everything else is
used exactly as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from tests.support import ROOT

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(Exception):
    """A required variable (${NAME:?message}) is missing, as Compose would refuse it."""


def interpolate(text: str, values: dict[str, str]) -> str:
    """Substitute ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, $NAME and $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        value = values.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise InterpolationError(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def variables_used(text: str) -> set[str]:
    """Return the names of the variables a text interpolates."""
    return {
        match.group("braced") or match.group("plain")
        for match in _VARIABLE.finditer(text)
        if match.group(0) != "$$"
    }


def env_file(path: Path) -> dict[str, str]:
    """Read a Compose .env file: NAME=value lines, # comments."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def compose_load(values: dict[str, str]) -> dict[str, Any]:
    """Parse compose.yaml (anchors and merge keys included) and interpolate every string."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str):
            return interpolate(node, values)
        return node

    return walk(yaml.safe_load(COMPOSE.read_text()))  # type: ignore[no-any-return]


def dockerfile_env() -> dict[str, str]:
    """Return the ENV settings of the hub's image."""
    env: dict[str, str] = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_cmd() -> list[str]:
    """Return the hub image's default command (its exec-form CMD)."""
    (line,) = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    command = json.loads(line[4:])
    assert isinstance(command, list), line
    return [str(part) for part in command]


@dataclass
class Machine:
    """Where the containers' names and ports lead on this machine."""

    database_url: str
    redis_url: str
    mqtt_port: int
    volumes: dict[str, Path]
    scratch: Path
    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def url(self, value: str) -> str:
        """Point a URL at a compose service (db, redis, mosquitto) to the machine's."""
        parts = urlsplit(value)
        if parts.hostname == "db":
            return self.database_url
        if parts.hostname == "redis":
            # The machine's host and port, with the password compose.yaml gives.
            target = urlsplit(self.redis_url)
            netloc = parts.netloc.rsplit("@", 1)
            auth = netloc[0] + "@" if len(netloc) == 2 else ""
            return urlunsplit(parts._replace(netloc=f"{auth}{target.hostname}:{target.port}"))
        if parts.hostname == "mosquitto":
            netloc = parts.netloc.rsplit("@", 1)
            auth = netloc[0] + "@" if len(netloc) == 2 else ""
            return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.mqtt_port}"))
        return value

    def path(self, service: dict[str, Any], value: str) -> str:
        """Point a path inside a named volume of the service to the volume's folder."""
        for mount in service.get("volumes") or ():
            source, _, target = str(mount).partition(":")
            target = target.split(":")[0]
            if source in self.volumes and value.startswith(target):
                return str(self.volumes[source]) + value[len(target) :]
        return value

    def port(self, service: str, container_port: int) -> int:
        """Return the local port standing for a container port of a service."""
        from tests.support import free_port

        return self.ports.setdefault((service, container_port), free_port())


@dataclass
class LocalService:
    """One compose service as a local process: its command, environment and health check."""

    name: str
    command: list[str]
    env: dict[str, str]
    health: list[str] | None
    one_shot: bool


_PORT_FLAGS = {"-p", "--port", "--metrics-port"}
_HOST_FLAGS = {"-b", "--bind", "--metrics-host"}


def local_service(
    name: str, service: dict[str, Any], machine: Machine, image_env: dict[str, str]
) -> LocalService:
    """Translate one hub service of compose.yaml into a local process."""
    command = [str(arg) for arg in service["command"]]
    local: list[str] = []
    for index, arg in enumerate(command):
        flag = command[index - 1] if index else ""
        if flag in _PORT_FLAGS:
            local.append(str(machine.port(name, int(arg))))
        elif flag in _HOST_FLAGS:
            local.append("127.0.0.1")
        else:
            local.append(machine.path(service, machine.url(arg)))
    env = {key: str(value) for key, value in image_env.items() if key.startswith("HUB_")}
    for key, value in (service.get("environment") or {}).items():
        env[key] = machine.url(str(value))
    if "HUB_VAR_DIR" in env:
        mounted = machine.path(service, env["HUB_VAR_DIR"])
        # Without a volume there, the folder is the container's own: a scratch folder here.
        env["HUB_VAR_DIR"] = (
            mounted if mounted != env["HUB_VAR_DIR"] else str(machine.scratch / name / "var")
        )
    health = None
    check = service.get("healthcheck")
    if check:
        test = [str(arg) for arg in check["test"]]
        assert test[0] == "CMD", f"{name}: health check must be CMD form"
        health = [_local_ports(name, arg, machine) for arg in test[1:]]
    return LocalService(name, local, env, health, service.get("restart") == "no")


def _local_ports(name: str, arg: str, machine: Machine) -> str:
    def replace(match: re.Match[str]) -> str:
        return f"127.0.0.1:{machine.port(name, int(match.group(1)))}"

    return re.sub(r"127\.0\.0\.1:(\d+)", replace, arg)
