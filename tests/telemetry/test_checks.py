"""The system check that stops `hub check`, `migrate` and `hub serve` without the chart library."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from telemetry.checks import ASSETS_MISSING, DASHBOARD_ASSETS
from tests.support import ROOT


def installed_assets() -> Path:
    """Return the folder STATICFILES_DIRS serves as static/uplot/ (the vendored uPlot)."""
    [(prefix, folder)] = django_settings.STATICFILES_DIRS
    assert prefix == "uplot"
    return Path(folder)


def test_check_is_silent_when_the_vendored_chart_library_is_found():
    # Registered with the staticfiles tag, so `hub check --tag staticfiles` runs it too.
    found = checks.run_checks(tags=[checks.Tags.staticfiles])
    assert [message.id for message in found if message.is_serious()] == []


def test_missing_chart_library_fails_hub_check_with_a_hint_naming_make_and_npm(settings, tmp_path):
    settings.STATICFILES_DIRS = [("uplot", str(tmp_path / "vendor" / "uplot"))]
    with pytest.raises(SystemCheckError) as failed:
        call_command("check")
    report = str(failed.value)
    assert f"({ASSETS_MISSING})" in report
    assert "uplot/uPlot.iife.min.js" in report and "uplot/uPlot.min.css" in report
    assert "`make`" in report and "npm ci" in report


def test_check_names_only_the_missing_file(settings, tmp_path):
    vendor = tmp_path / "uplot"
    vendor.mkdir()
    shutil.copy(installed_assets() / "uPlot.iife.min.js", vendor)
    settings.STATICFILES_DIRS = [("uplot", str(vendor))]
    [error] = [message for message in checks.run_checks() if message.id == ASSETS_MISSING]
    assert error.level == checks.ERROR
    assert "uplot/uPlot.min.css" in error.msg
    assert "uPlot.iife.min.js" not in error.msg


def test_check_covers_every_vendored_file_the_templates_load():
    loaded = {
        name
        for template in (ROOT / "telemetry" / "templates").rglob("*.html")
        for name in re.findall(r"""{% static ['"]([^'"]+)['"] %}""", template.read_text())
        if name.startswith("uplot/")
    }
    assert loaded and loaded <= set(DASHBOARD_ASSETS)
