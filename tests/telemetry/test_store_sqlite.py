"""Embedded mode's SQLite passes the same store, prune, readings and series tests as PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_store_tests_pass_on_sqlite(tmp_path: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests" / "telemetry" / "test_store.py"),
            str(ROOT / "tests" / "telemetry" / "test_metric_limit.py"),
            str(ROOT / "tests" / "telemetry" / "test_prune.py"),
            str(ROOT / "tests" / "telemetry" / "test_api_readings.py"),
            str(ROOT / "tests" / "telemetry" / "test_api_series_calendar.py"),
            # The series path reads times as integers SQLite computes (selectors._EpochMs).
            str(ROOT / "tests" / "telemetry" / "test_api_series.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/store.sqlite3"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
