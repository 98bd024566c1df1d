"""System checks of the telemetry app: the dashboard's browser libraries are there to serve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.contrib.staticfiles import finders
from django.core.checks import CheckMessage, Error

# What templates/telemetry/charts.html loads: uPlot, vendored from npm by scripts/assets.sh.
DASHBOARD_ASSETS = ("uplot/uPlot.iife.min.js", "uplot/uPlot.min.css")
ASSETS_MISSING = "telemetry.E001"


def dashboard_assets_check(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report, as one error, each dashboard library that staticfiles cannot find."""
    missing = [name for name in DASHBOARD_ASSETS if not finders.find(name)]
    if not missing:
        return []
    return [
        Error(
            f"The dashboard's browser libraries are missing ({', '.join(missing)}): "
            "its charts would not load.",
            hint=(
                "In a git checkout run `make` (or scripts/assets.sh: npm ci from "
                "package-lock.json, copied into telemetry/vendor/); elsewhere install the "
                "hub from a wheel or sdist built from a checkout (`pip install .`, "
                "`python -m build`), which carries them."
            ),
            id=ASSETS_MISSING,
        )
    ]
