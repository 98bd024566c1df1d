"""Unit tests of broker URLs, credentials files and the command-line options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim.cli import build_parser, config_from_args
from firmware_sim.config import (
    ConfigError,
    DeviceIdentity,
    FleetConfig,
    numbered_identities,
    parse_broker_url,
    read_credentials,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883)),
        ("mqtt://broker.example", ("broker.example", 1883)),
        ("mqtt://user:pass@broker:2883", ("broker", 2883)),
        ("mqtt://[::1]:1884/", ("::1", 1884)),
    ],
)
def test_broker_url_gives_host_and_port(url: str, expected: tuple[str, int]) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://host", "mqtts://host", "mqtt://", "mqtt://host:99999", "mqtt://h/x", "host"]
)
def test_unusable_broker_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_broker_url(url)


def test_numbered_identities_are_zero_padded_without_tokens() -> None:
    identities = numbered_identities(3, "sim-")
    assert [i.uid for i in identities] == ["sim-0001", "sim-0002", "sim-0003"]
    assert all(i.token is None for i in identities)


def test_prefix_that_makes_an_invalid_uid_is_refused() -> None:
    with pytest.raises(ConfigError, match="uid"):
        numbered_identities(1, "bad prefix ")


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_credentials_file_lists_uids_and_tokens(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "creds.jsonl",
        json.dumps({"uid": "dev-a", "token": "t-a"}),
        "",
        json.dumps({"uid": "dev-b", "token": "t-b", "extra": 1}),
    )
    assert read_credentials(path) == (
        DeviceIdentity("dev-a", "t-a"),
        DeviceIdentity("dev-b", "t-b"),
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"uid": "dev-a", "token": "t"}', "{oops"], "creds.jsonl:2: not JSON"),
        (['["dev-a", "t"]'], "expected a JSON object"),
        (['{"uid": "dev-a"}'], '"token"'),
        (['{"uid": "bad uid", "token": "t"}'], "invalid device uid"),
        (['{"uid": "d", "token": "t"}', '{"uid": "d", "token": "u"}'], "listed twice"),
        ([""], "lists no devices"),
    ],
)
def test_bad_credentials_file_names_the_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = _write(tmp_path / "creds.jsonl", *lines)
    with pytest.raises(ConfigError, match=message):
        read_credentials(path)


def test_missing_credentials_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_credentials(tmp_path / "absent.jsonl")


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0.0}, {"rate": float("nan")}, {"qos": 2}, {"port": 0}, {"identities": ()}]
)
def test_fleet_config_refuses_impossible_settings(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"identities": numbered_identities(1)} | kwargs
    with pytest.raises(ConfigError):
        FleetConfig(**settings)  # type: ignore[arg-type]


def test_command_line_defaults_follow_the_contract() -> None:
    args = build_parser().parse_args(["--devices", "2", "--rate", "0.5"])
    config = config_from_args(args)
    assert [i.uid for i in config.identities] == ["sim-0001", "sim-0002"]
    assert (config.host, config.port, config.qos, config.rate) == ("127.0.0.1", 1883, 1, 0.5)
    assert args.duration is None


def test_credentials_option_picks_the_first_n_devices_and_ignores_the_prefix(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path / "creds.jsonl",
        *(json.dumps({"uid": f"dev-{n}", "token": f"t{n}"}) for n in range(3)),
    )
    argv = ["--devices", "2", "--rate", "1", "--credentials", str(path), "--uid-prefix", "x-"]
    config = config_from_args(build_parser().parse_args(argv))
    assert config.identities == (DeviceIdentity("dev-0", "t0"), DeviceIdentity("dev-1", "t1"))
    argv[1] = "10"
    config = config_from_args(build_parser().parse_args(argv))
    assert len(config.identities) == 3


def test_broker_option_accepts_userinfo_and_qos_zero() -> None:
    argv = ["--devices", "1", "--rate", "50", "--broker", "mqtt://u:p@h:2000", "--qos", "0"]
    config = config_from_args(build_parser().parse_args(argv))
    assert (config.host, config.port, config.qos) == ("h", 2000, 0)
    assert config.identities[0].token is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--devices", "0", "--rate", "1"],
        ["--devices", "1", "--rate", "-1"],
        ["--devices", "1", "--rate", "1", "--duration", "0"],
    ],
)
def test_impossible_numbers_are_refused(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        config_from_args(build_parser().parse_args(argv))
