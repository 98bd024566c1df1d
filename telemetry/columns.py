"""A batch's readings as columns, the way bridges hand them to the ingest worker.

One list per field instead of a list of (uid, metric, ts, value) per reading: the
device is given once per run of consecutive readings (a message's readings are
one run), and the channel layer's msgpack writes flat lists of scalars. On the
wire: `[devices, runs, metrics, ts, values]`, where devices[i] sent the next
runs[i] readings. IngestBatch.parse also takes the older list of 4-lists
(`readings`), which HTTP ingest sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

# As telemetry.values.WireValue (not imported: the bridge needs no models).
WireValue = float | int | bool | str


@dataclass(slots=True)
class ReadingColumns:
    """Readings as columns; devices[i] sent the next runs[i] of them."""

    devices: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    values: list[WireValue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.metrics)

    def add(self, uid: str, readings: Sequence[Sequence[Any]]) -> None:
        """Append one device's readings ((uid, metric, ts, value), the uid being `uid`)."""
        if not readings:
            return
        if self.devices and self.devices[-1] == uid:
            self.runs[-1] += len(readings)
        else:
            self.devices.append(uid)
            self.runs.append(len(readings))
        self.metrics.extend([reading[1] for reading in readings])
        self.ts.extend([reading[2] for reading in readings])
        self.values.extend([reading[3] for reading in readings])

    def uids(self) -> Iterator[str]:
        """Yield the device uid of each reading."""
        return chain.from_iterable(map(repeat, self.devices, self.runs))

    def rows(self) -> Iterator[tuple[str, str, int, WireValue]]:
        """Yield each reading as (uid, metric, ts, value)."""
        return zip(self.uids(), self.metrics, self.ts, self.values, strict=True)

    def encode(self) -> list[list[Any]]:
        """Return the wire form."""
        return [self.devices, self.runs, self.metrics, self.ts, self.values]

    @classmethod
    def decode(cls, wire: object) -> ReadingColumns:
        """Read the wire form; ValueError or TypeError when it is malformed."""
        if not isinstance(wire, list | tuple) or len(wire) != 5:
            raise ValueError("columns are [devices, runs, metrics, ts, values]")
        devices, runs, metrics, ts, values = (list(column) for column in wire)
        if len(devices) != len(runs) or any(type(run) is not int or run < 0 for run in runs):
            raise ValueError("each device needs its count of readings")
        if not sum(runs) == len(metrics) == len(ts) == len(values):
            raise ValueError("the columns differ in length")
        return cls(devices, runs, metrics, ts, values)

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> ReadingColumns:
        """Build columns from (uid, metric, ts, value) rows, keeping their order."""
        columns = cls()
        for uid, metric, ts, value in rows:
            if columns.devices and columns.devices[-1] == uid:
                columns.runs[-1] += 1
            else:
                columns.devices.append(uid)
                columns.runs.append(1)
            columns.metrics.append(metric)
            columns.ts.append(ts)
            columns.values.append(value)
        return columns
