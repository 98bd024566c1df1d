"""An admin or probe connection to the broker leaves no descriptor open once closed."""

from __future__ import annotations

import gc

import psutil
import pytest

from devices.dynsec import credentials_accepted

pytestmark = pytest.mark.services


def test_probing_credentials_leaves_no_socket_open():
    process = psutil.Process()
    credentials_accepted("mqtt://127.0.0.1:1883", "probe", "secret")  # paho's first-use setup
    gc.collect()
    before = process.num_fds()
    for _ in range(5):
        credentials_accepted("mqtt://127.0.0.1:1883", "probe", "secret")
    # Closed by the code, not by the garbage collector.
    assert process.num_fds() == before
