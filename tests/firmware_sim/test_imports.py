"""firmware_sim stands alone: it speaks MQTT and imports nothing of the hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "django",
    "rest_framework",
    "channels",
    "hub",
    "devices",
    "telemetry",
    "alarms",
    "bridges",
}


def test_firmware_sim_imports_neither_django_nor_hub_packages() -> None:
    script = (
        "import sys, firmware_sim, firmware_sim.cli, firmware_sim.__main__\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert FORBIDDEN.isdisjoint(result.stdout.strip().split(","))
