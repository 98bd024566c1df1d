"""`hub device add`: one line of JSON with the token, clean one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from devices.models import Device
from devices.services import device_authenticate
from tests.factories import make_device

pytestmark = pytest.mark.django_db

HUB = Path(sys.executable).with_name("hub")


def add(*args: str) -> str:
    out = StringIO()
    call_command("device", "add", *args, stdout=out)
    return out.getvalue()


def test_add_prints_one_line_of_json_with_a_working_token(alice):
    output = add("sensor-1", "--owner", "alice", "--name", "Sensor one")
    assert output.endswith("\n") and output.count("\n") == 1
    body = json.loads(output)
    assert set(body) == {"uid", "token"} and body["uid"] == "sensor-1"
    device = Device.objects.get(uid="sensor-1")
    assert (device.owner, device.name) == (alice, "Sensor one")
    assert device_authenticate(uid="sensor-1", token=body["token"]) == device


def test_add_without_name_gives_empty_name(alice):
    add("sensor-1", "--owner", "alice")
    assert Device.objects.get(uid="sensor-1").name == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sensor-1", "--owner", "nobody"), "unknown owner 'nobody'"),
        (("bad uid", "--owner", "alice"), "invalid uid 'bad uid'"),
        (("--owner", "alice", "--", "-x"), "invalid uid '-x'"),
        (("taken", "--owner", "alice"), "already exists"),
        (("sensor-1", "--owner", "alice", "--name", "n" * 200), "name"),
        (("sensor-1", "--owner", "a\x00b"), "unknown owner"),
    ],
)
def test_add_errors_are_one_clear_line(alice, bob, args, message):
    make_device(bob, "taken")
    with pytest.raises(CommandError) as error:
        add(*args)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert not Device.objects.filter(owner=alice).exists()


def test_add_requires_owner_and_an_action():
    with pytest.raises(CommandError):
        call_command("device", "add", "sensor-1")
    with pytest.raises(CommandError):
        call_command("device")


@pytest.mark.django_db(transaction=True)
def test_hub_device_add_console_script(alice, tmp_path):
    # `make test` installs the project and runs the suite on PostgreSQL: never skip.
    assert shutil.which(str(HUB)) is not None, f"{HUB} is not installed"
    assert connection.vendor == "postgresql", "the subprocess needs a database it can open"
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        "SECRET_KEY": "test-only-secret-key-not-for-production",
        "HUB_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "hub.settings",
    }
    if database.get("PASSWORD"):
        env["PGPASSWORD"] = database["PASSWORD"]
    ok = subprocess.run(
        [str(HUB), "device", "add", "cli-1", "--owner", "alice"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert body["uid"] == "cli-1"
    assert device_authenticate(uid="cli-1", token=body["token"]) is not None

    again = subprocess.run(
        [str(HUB), "device", "add", "cli-1", "--owner", "alice"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode != 0
    assert again.stdout == ""
    assert again.stderr.strip().splitlines() == [
        "CommandError: uid 'cli-1': a device with this uid already exists"
    ]
