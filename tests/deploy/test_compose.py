"""compose.yaml is true: every hub service, started from its command and environment, is healthy.

No Docker engine runs here. The file is read as Compose reads it (anchors, merge
keys, ${…} from .env.example), and each hub service runs as a local process:
the one-shot services to completion in dependency order, the others until
their own health check passes — Daphne's /healthz, the workers' /healthz on
their metrics port — against a fresh database, a private Redis requiring the
password from .env and a private Mosquitto with the hub's configuration. The nginx
configuration is only parsed and checked against the services (no nginx here).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose import (
    COMPOSE,
    ENV_EXAMPLE,
    InterpolationError,
    LocalService,
    Machine,
    compose_load,
    dockerfile_cmd,
    dockerfile_env,
    env_file,
    local_service,
    variables_used,
)
from tests.deploy.harness import (
    Processes,
    base_env,
    database_create,
    database_drop,
    scrape,
    wait_healthy,
)
from tests.support import ROOT, Mosquitto, free_port, port_open, wait_until

pytestmark = pytest.mark.e2e

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
# The hub's own image carries its version, like every other image: a release bumps both.
HUB_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
HUB_IMAGE = f"telemetry-hub:{HUB_VERSION}"
REDIS_PASSWORD = "compose-test-redis-" + uuid.uuid4().hex[:8]


def filled_env() -> dict[str, str]:
    """.env.example with its two secrets filled in, as a user's .env would be."""
    return {
        **env_file(ENV_EXAMPLE),
        "SECRET_KEY": "compose-test-" + uuid.uuid4().hex,
        "POSTGRES_PASSWORD": "compose-test",
        "REDIS_PASSWORD": REDIS_PASSWORD,
    }


def hub_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == HUB_IMAGE
    }


def test_env_example_lists_every_variable_compose_yaml_uses():
    assert variables_used(COMPOSE.read_text()) == set(env_file(ENV_EXAMPLE))


def test_compose_refuses_to_start_until_the_secrets_are_set():
    with pytest.raises(InterpolationError, match=r"POSTGRES_PASSWORD|SECRET_KEY|REDIS_PASSWORD"):
        compose_load(env_file(ENV_EXAMPLE))


def test_stack_has_every_production_service():
    services = compose_load(filled_env())["services"]
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    assert (
        "./deploy/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro"
        in (services["mosquitto"]["volumes"])
    )
    hub = hub_services(compose_load(filled_env()))
    commands = {name: service["command"] for name, service in hub.items()}
    assert commands["migrate"] == ["hub", "migrate", "--noinput"]
    assert hub["migrate"]["restart"] == "no"
    webs = [name for name, command in commands.items() if command[0] == "daphne"]
    bridges = [name for name, command in commands.items() if command[:2] == ["hub", "bridge"]]
    ingests = [name for name, command in commands.items() if command[:2] == ["hub", "ingest"]]
    assert len(webs) == len(bridges) == len(ingests) == 2
    groups = {hub[name]["environment"]["HUB_MQTT_SHARED_GROUP"] for name in bridges}
    client_ids = {hub[name]["environment"]["HUB_MQTT_CLIENT_ID"] for name in bridges}
    assert len(groups) == 1 and len(client_ids) == 2
    assert "demo" in hub["simulator"]["profiles"]
    for name in (*webs, *bridges, *ingests):
        assert hub[name]["healthcheck"]["test"][0] == "CMD", name
        assert hub[name]["depends_on"]["migrate"]["condition"] == ("service_completed_successfully")
    for name, service in services.items():
        for dependency in service.get("depends_on") or ():
            assert dependency in services, f"{name} depends on unknown {dependency}"
    proxy = services["proxy"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == set(webs)
    volumes = compose_load(filled_env())["volumes"]
    assert {"db-data", "broker-data"} <= set(volumes)


def test_every_image_is_pinned_to_a_version():
    """No image floats: not untagged, not `latest`, not a bare major like `redis:7`."""
    services = compose_load(filled_env())["services"]
    images = {name: service["image"] for name, service in services.items() if "image" in service}
    assert set(images) == set(services)
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert "latest" not in tag, f"{name}: {image}"
        assert re.match(r"\d+\.\d+\.\d+(-|$)", tag), f"{name}: {image} is not pinned to x.y.z"
    assert services["db"]["image"] == "timescale/timescaledb:2.29.2-pg16"
    # Every service built from this repository carries the version pyproject.toml has.
    assert {"migrate", "web-1", "bridge-1", "ingest-1", "simulator"} <= set(
        hub_services(compose_load(filled_env()))
    )


def test_redis_and_the_database_are_private_and_redis_requires_the_password():
    compose = compose_load(filled_env())
    services = compose["services"]
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("db", "redis"):
        assert "ports" not in services[name], name
        assert services[name]["networks"] == ["backend"], name
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--requirepass") + 1] == REDIS_PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD
    for name, service in hub_services(compose).items():
        url = (service.get("environment") or {}).get("REDIS_URL")
        if url is not None:
            assert url == f"redis://:{REDIS_PASSWORD}@redis:6379/0", name
            assert "backend" in service["networks"], name
    # Without it, compose refuses to start.
    with pytest.raises(InterpolationError, match="REDIS_PASSWORD"):
        compose_load({**filled_env(), "REDIS_PASSWORD": ""})


def nginx_parse(text: str) -> list[tuple[str, list[str], list[Any]]]:
    """Parse nginx's configuration syntax into (directive, arguments, block) triples."""
    tokens = re.findall(r"'[^']*'|\"[^\"]*\"|[{};]|[^\s{};'\"]+", re.sub(r"(?m)#.*$", "", text))
    position = 0

    def block() -> list[tuple[str, list[str], list[Any]]]:
        nonlocal position
        directives: list[tuple[str, list[str], list[Any]]] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                assert words, "empty directive"
                directives.append((words[0], words[1:], []))
                words = []
            elif token == "{":
                assert words, "block without a directive"
                directives.append((words[0], words[1:], block()))
                words = []
            elif token == "}":
                assert not words, f"directive {words} not ended with ;"
                return directives
            else:
                words.append(token.strip("'\""))
        assert not words, f"directive {words} not ended with ;"
        return directives

    parsed = block()
    assert position == len(tokens), "unbalanced braces"
    return parsed


def find(directives: list[Any], name: str) -> list[tuple[str, list[str], list[Any]]]:
    return [directive for directive in directives if directive[0] == name]


def test_proxy_config_sends_http_and_websockets_to_every_daphne():
    config = nginx_parse(NGINX_CONF.read_text())
    (http,) = find(config, "http")
    upstreams = {args[0]: block for _, args, block in find(http[2], "upstream")}
    hub = hub_services(compose_load(filled_env()))
    webs = {
        f"{name}:{service['command'][service['command'].index('-p') + 1]}"
        for name, service in hub.items()
        if service["command"][0] == "daphne"
    }
    servers = {args[0] for _, args, _ in find(upstreams["hub_web"], "server")}
    assert servers == webs
    (server,) = find(http[2], "server")
    locations = {tuple(args): block for _, args, block in find(server[2], "location")}
    websocket = locations[("/ws/",)]
    headers = {tuple(args[:2]) for _, args, _ in find(websocket, "proxy_set_header")}
    assert ("Upgrade", "$http_upgrade") in headers
    assert ("Connection", "$connection_upgrade") in headers
    assert find(websocket, "proxy_http_version")[0][1] == ["1.1"]
    for location in (locations[("/ws/",)], locations[("/",)]):
        assert find(location, "proxy_pass")[0][1] == ["http://hub_web"]
    assert find(locations[("=", "/metrics")], "return")[0][1] == ["404"]
    # Socket URLs carry API tokens (?token=…): the access log keeps the path only.
    assert "$request_uri" not in NGINX_CONF.read_text()


def test_only_a_daphne_behind_the_proxy_believes_x_forwarded_for():
    # Daphne's --proxy-headers takes the client address from X-Forwarded-For, from anyone:
    # reached directly, a client would choose the address its throttles count. Only
    # Daphnes that clients reach through nginx, which overwrites the header, may use it.
    image = dockerfile_cmd()
    assert image[0] == "daphne" and "--proxy-headers" not in image, image
    config = nginx_parse(NGINX_CONF.read_text())
    (http,) = find(config, "http")
    (server,) = find(http[2], "server")
    for _, args, location in find(server[2], "location"):
        if find(location, "proxy_pass"):
            headers = {tuple(args[:2]) for _, args, _ in find(location, "proxy_set_header")}
            assert ("X-Forwarded-For", "$remote_addr") in headers, args
    for name, service in hub_services(compose_load(filled_env())).items():
        if "--proxy-headers" in service.get("command", []):
            assert not service.get("ports"), f"{name}: published, so reachable directly"


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    mosquitto = Mosquitto(_folder(tmp_path / "mosquitto")).start()
    # Redis as compose runs it: requiring the password from .env.
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--requirepass", REDIS_PASSWORD, "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(redis_port), message="the private redis-server")
    database = database_create("hub_compose")
    machine = Machine(
        database_url=f"postgres://postgres@127.0.0.1:5432/{database}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        mqtt_port=mosquitto.port,
        volumes={"demo-data": _folder(tmp_path / "demo-data")},
        scratch=_folder(tmp_path / "scratch"),
    )
    try:
        yield machine
    finally:
        mosquitto.stop()
        redis.terminate()
        redis.wait(10)
        database_drop(database)


def test_every_hub_service_starts_from_its_command_and_environment_and_is_healthy(
    tmp_path, machine
):
    compose = compose_load(filled_env())
    image_env = dockerfile_env()
    services = {
        name: local_service(name, service, machine, image_env)
        for name, service in hub_services(compose).items()
    }
    prefix = f"compose{uuid.uuid4().hex[:10]}"
    processes = Processes(_folder(tmp_path / "logs"), base_env(HUB_CHANNEL_PREFIX=prefix))
    try:
        # One-shot services first, in dependency order (service_completed_successfully);
        # then the rest together, as Compose starts them once those have exited.
        order = _dependency_order(compose, services)
        for name in order:
            if services[name].one_shot:
                _run_to_completion(processes, services[name])
        for name in order:
            if not services[name].one_shot:
                processes.start(name, services[name].command, **services[name].env)
        for name in order:
            if services[name].health is not None:
                _wait_health_check(processes, services[name])
        healthy = {
            name: [arg for arg in service.health if "http://" in arg]
            for name, service in services.items()
            if service.health
        }
        assert len(healthy) == 6, healthy
        ingests = [name for name in services if services[name].command[1:2] == ["ingest"]]
        # The simulator's devices (the demo profile) reach the database through the stack.
        wait_until(
            lambda: _readings_stored(processes, machine, ingests) > 0,
            timeout=30,
            interval=0.5,
            message="the simulator's readings stored",
        )
        for name in services:
            if name in processes.running and name != "simulator":
                for line in processes.log_lines(name):
                    assert "message" in json.loads(line), f"{name} logged {line!r}"
    except AssertionError as error:
        raise AssertionError(f"{error}\n{processes.logs()}") from None
    finally:
        stopped = processes.terminate()
    for name, (code, _) in stopped.items():
        assert code == 0, f"{name} exited with {code} on SIGTERM\n{processes.logs()}"


def _dependency_order(compose: dict[str, Any], services: dict[str, LocalService]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in services:
            return
        for dependency in compose["services"][name].get("depends_on") or ():
            visit(dependency)
        order.append(name)

    for name in services:
        visit(name)
    return order


def _run_to_completion(processes: Processes, service: LocalService) -> None:
    done = subprocess.run(
        service.command,
        env={**processes.env, **service.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    (processes.tmp / f"{service.name}.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"{service.name} failed: {done.stderr}"


def _wait_health_check(processes: Processes, service: LocalService) -> None:
    assert service.health is not None
    env = {**processes.env, **service.env}

    def passes() -> bool:
        processes.alive()
        check = subprocess.run(service.health, env=env, capture_output=True, timeout=15)
        return check.returncode == 0

    wait_until(passes, timeout=60, interval=0.5, message=f"{service.name}'s health check")
    urls = [arg for arg in " ".join(service.health).split("'") if arg.startswith("http://")]
    wait_healthy(processes, urls, timeout=5)


def _readings_stored(processes: Processes, machine: Machine, ingests: list[str]) -> float:
    processes.alive()
    total = 0.0
    for name in ingests:
        port = machine.ports[(name, 9100)]
        total += scrape(f"http://127.0.0.1:{port}/metrics").value("hub_readings_stored_total")
    return total


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
