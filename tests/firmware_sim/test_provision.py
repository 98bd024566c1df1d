"""The simulator's claim: its request, how it reads answers, and its options."""

from __future__ import annotations

import json

import pytest

from firmware_sim.cli import build_parser, config_from_args
from firmware_sim.config import ConfigError, DeviceIdentity, ProvisionKey
from firmware_sim.provision import ClaimRefused, answer_read, request_payload


def test_the_request_carries_key_and_secret_for_a_managed_mosquitto():
    request = json.loads(request_payload(ProvisionKey("pk.abc", "s3cret"), "sim-1"))
    assert request == {"key": "pk.abc", "secret": "s3cret", "name": "sim-1"}


def test_an_ok_answer_gives_the_identity_and_a_cleared_one_nothing():
    answer = b'{"status": "ok", "uid": "sim-1", "token": "t0k"}'
    assert answer_read("sim-1", answer) == DeviceIdentity("sim-1", "t0k")
    assert answer_read("sim-1", b"") is None  # a retained answer cleared by the hub


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"status": "error", "error": "uid_taken"}', "uid_taken"),
        (b"not json", "unreadable answer"),
        (b'["ok"]', "unreadable answer"),
    ],
)
def test_a_refusal_or_garbage_is_raised_with_its_code(payload, code):
    with pytest.raises(ClaimRefused) as refused:
        answer_read("sim-1", payload)
    assert refused.value.code == code


def test_a_provision_key_needs_its_secret(monkeypatch):
    monkeypatch.delenv("FIRMWARE_SIM_PROVISION_SECRET", raising=False)
    parser = build_parser()
    args = parser.parse_args(["--devices", "1", "--rate", "1", "--provision-key", "pk.a"])
    with pytest.raises(ConfigError, match="--provision-secret"):
        config_from_args(args)
    monkeypatch.setenv("FIRMWARE_SIM_PROVISION_SECRET", "from-env")
    args = build_parser().parse_args(["--devices", "1", "--rate", "1", "--provision-key", "pk.a"])
    config = config_from_args(args)
    assert config.provision == ProvisionKey("pk.a", "from-env")
    assert "from-env" not in repr(config)
