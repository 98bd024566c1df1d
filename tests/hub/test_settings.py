"""Settings come from the environment; a bad one stops start-up with one line naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import hub_env


def run_hub(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=hub_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"DATABASE_URL": "ftp://db.example/hub"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:notaport"}, "REDIS_URL"),
        ({"MQTT_URL": "http://broker"}, "MQTT_URL"),
        ({"DEBUG": "perhaps"}, "DEBUG"),
        ({"HUB_BATCH_MAX_READINGS": "lots"}, "HUB_BATCH_MAX_READINGS"),
        ({"HUB_MAX_READINGS": "0"}, "HUB_MAX_READINGS"),
        ({"HUB_GC_YOUNG_THRESHOLD": "0"}, "HUB_GC_YOUNG_THRESHOLD"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "SECRET_KEY"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path, env, name):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path), **env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0]


def test_daphne_entry_point_reports_a_bad_setting_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import hub.asgi"],
        env=hub_env(HUB_VAR_DIR=str(tmp_path), MQTT_URL="nonsense"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "MQTT_URL" in done.stderr


def test_embedded_defaults_need_no_settings(tmp_path):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "secret_key").exists()
