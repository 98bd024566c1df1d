"""Fixtures of the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import Hub
from tests.e2e.harness import _stop_all


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path)
    try:
        running.start()
        yield running
    finally:
        _stop_all(running.under_test)
