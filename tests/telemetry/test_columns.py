"""A batch's readings as columns: bridge → ingest worker, stored as the rows they stand for."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer

from telemetry.columns import ReadingColumns
from telemetry.ingest import IngestBatch, ingest_batch_handle
from telemetry.models import Reading
from telemetry.values import columns_to_value, datetime_to_ms
from tests.factories import make_device, make_user

T0 = 1_764_139_200_000


def rows() -> list[tuple[str, str, int, object]]:
    return [
        ("a", "t", T0, 1.5),
        ("a", "h", T0, 40),
        ("x", "t", T0, 9.0),  # unknown device, between two runs of known ones
        ("b", "t", T0, True),
        ("b", "t", T0, False),  # repeated in the batch: the first one is stored
        ("b", "s", T0 + 1, "on"),
        ("a", "t", T0 + 1, 2.5),
    ]


def test_columns_keep_each_reading_and_its_device() -> None:
    columns = ReadingColumns()
    columns.add("a", [("a", "t", T0, 1.5), ("a", "h", T0, 40)])
    columns.add("a", [])
    columns.add("x", [("x", "t", T0, 9.0)])
    columns.add("b", [("b", "t", T0, True), ("b", "t", T0, False), ("b", "s", T0 + 1, "on")])
    columns.add("a", [("a", "t", T0 + 1, 2.5)])
    assert (columns.devices, columns.runs) == (["a", "x", "b", "a"], [2, 1, 3, 1])
    assert len(columns) == 7
    assert list(columns.rows()) == rows()
    assert ReadingColumns.from_rows(rows()) == columns
    assert ReadingColumns.decode(columns.encode()) == columns


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [["a"], [1], ["t"], [T0]],  # four columns
        [["a"], [2], ["t"], [T0], [1.0]],  # the run counts more readings than there are
        [["a", "b"], [1], ["t"], [T0], [1.0]],  # a device without its count
        [["a"], [-1], [], [], []],
        [["a"], ["1"], ["t"], [T0], [1.0]],
        [["a"], [1], ["t", "h"], [T0], [1.0]],
    ],
)
def test_malformed_columns_make_a_malformed_batch(wire: object) -> None:
    message = {"type": "ingest.batch", "batch": "b", "received": T0, "columns": wire}
    assert IngestBatch.parse(message) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("form", ["columns", "readings"])
async def test_a_batch_as_columns_stores_what_its_rows_would(form: str) -> None:
    def devices() -> None:
        owner = make_user()
        make_device(owner, "a")
        make_device(owner, "b")

    await database_sync_to_async(devices)()
    layer = InMemoryChannelLayer()
    reply = await layer.new_channel()
    message = {"type": "ingest.batch", "batch": "b-1", "reply": reply, "received": T0 + 5}
    if form == "columns":
        message["columns"] = ReadingColumns.from_rows(rows()).encode()
    else:  # as HTTP ingest sends them
        message["readings"] = [list(row) for row in rows()]
    assert await ingest_batch_handle(layer, message)
    answer = await layer.receive(reply)
    assert (answer["inserted"], answer["duplicates"], answer["unknown"]) == (5, 1, {"x": 1})

    def stored() -> set[tuple[str, str, int, object]]:
        return {
            (
                row.device.uid,
                row.metric,
                datetime_to_ms(row.ts),
                columns_to_value(row.value, row.text, row.kind),
            )
            for row in Reading.objects.select_related("device")
        }

    assert await database_sync_to_async(stored)() == {
        ("a", "t", T0, 1.5),
        ("a", "h", T0, 40),
        ("b", "t", T0, True),
        ("b", "s", T0 + 1, "on"),
        ("a", "t", T0 + 1, 2.5),
    }
