"""A cursor walk while another thread stores: every row that existed before, once, in order."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from django.db import connection

from telemetry.codec import format_ts
from telemetry.services import readings_store_batch
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import RECEIVED_AT, T0, api_client

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/devices/walk-1/readings/"
ROWS = 3000
SPAN = ROWS * 1000


class Writer(threading.Thread):
    """Stores batches through the store until told to stop: ahead of, behind and among the rows."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.batches = 0
        self.error: BaseException | None = None
        self.rng = random.Random(13)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = []
                for _ in range(40):
                    # Same instants as the original rows with metrics that sort between
                    # theirs, new instants anywhere in the range, and beyond its end.
                    ts = T0 + self.rng.randrange(-SPAN // 10, SPAN + SPAN // 10)
                    if self.rng.random() < 0.5:
                        ts -= ts % 1000
                    metric = self.rng.choice(["a0", "aa", "b0", "0", "zz"])
                    batch.append(("walk-1", metric, ts, 1.0))
                readings_store_batch(readings=batch, received_at=RECEIVED_AT)
                self.batches += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            connection.close()


@pytest.fixture
def walk_setup() -> Iterator[tuple]:
    owner = make_user()
    make_device(owner, "walk-1")
    original = [
        ("walk-1", m, T0 + i * 1000, float(i)) for i in range(ROWS // 2) for m in ("a", "b")
    ]
    readings_store_batch(readings=original, received_at=RECEIVED_AT)
    writer = Writer()
    writer.start()
    yield api_client(owner), {(format_ts(t), m) for _, m, t, _ in original}, writer
    writer.stop.set()
    writer.join(30)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_cursor_walk_sees_every_existing_row_once_in_order_while_a_writer_inserts(
    walk_setup, order
):
    api, original, writer = walk_setup
    # The range ends before the writer's later rows, which must not matter either.
    params = {"start": str(T0 - SPAN), "end": str(T0 + SPAN), "limit": "37", "order": order}
    seen: list[tuple[str, str]] = []
    response = api.get(URL, params)
    pages = 0
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend((row["ts"], row["metric"]) for row in body["results"])
        pages += 1
        if body["next"] is None:
            break
        response = api.get(body["next"])
    writer.stop.set()
    writer.join(30)
    assert writer.error is None, writer.error
    assert writer.batches >= 3, "the writer should have stored while the walk went on"
    assert pages > ROWS // 37
    assert len(seen) == len(set(seen)), "a row came twice"
    assert seen == sorted(seen, reverse=order == "desc"), "rows out of order"
    missing = original - set(seen)
    assert not missing, f"{len(missing)} rows that existed before the walk were skipped"
