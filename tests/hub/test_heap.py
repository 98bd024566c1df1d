"""The hub's long-running processes freeze their start-up heap and collect young objects rarely."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import hub_env

# What Daphne runs at import (hub/asgi.py calls heap_settle last), then the collector's state.
PROBE = (
    "import gc, json, hub.asgi; "
    "print(json.dumps({'threshold': gc.get_threshold(), 'frozen': gc.get_freeze_count()}))"
)


@pytest.mark.parametrize(("env", "young"), [({}, 50_000), ({"HUB_GC_YOUNG_THRESHOLD": "700"}, 700)])
def test_web_process_collects_young_objects_at_the_setting_with_start_up_frozen(
    tmp_path, env, young
):
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=hub_env(HUB_VAR_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["threshold"][0] == young
    # The older generations keep Python's thresholds.
    assert state["threshold"][1:] == [10, 10]
    # Modules, the URLconf and its views: far more than an interpreter starts with.
    assert state["frozen"] > 50_000
