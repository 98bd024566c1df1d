"""CPU seconds and peak memory of the processes of one row, and of the rest of the machine."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from bench.support.procs import Child


class Measured(Protocol):
    """What a meter asks of the row it measures (bench.rows.base.Row has both)."""

    def measured(self) -> dict[str, Child]:
        """Return the row's own processes by name."""
        ...

    def extra_pids(self) -> dict[str, list[int]]:
        """Return processes shared with others (database backends, Redis) by name."""
        ...


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by each measured process, and by the machine."""

    at: float
    by_name: dict[str, dict[int, float]] = field(default_factory=dict)
    machine_busy: float = 0.0
    bench: float = 0.0


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores spent on anything but idling."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_of(pid: int) -> float | None:
    """Return a process's user + system CPU seconds, or None if it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


class Meter:
    """Measures the row's processes plus the broker (unless the row has its own) and publisher."""

    def __init__(self, row: Measured, broker: Child | None, publisher: Child) -> None:
        self.row = row
        self.broker = broker
        self.publisher = publisher
        self.bench = psutil.Process()
        # Last CPU seen per process, so one that exits mid-window (a database
        # backend Django closes after CONN_MAX_AGE) still counts until then.
        self.seen: dict[str, dict[int, float]] = {}

    def children(self) -> dict[str, Child]:
        """Return every process started for this row, by name."""
        children = {**self.row.measured(), "publisher": self.publisher}
        if self.broker is not None:
            children["mosquitto"] = self.broker
        return children

    def track(self) -> None:
        """Note the CPU seconds of every measured process now (call it often)."""
        pids = {name: [child.ps.pid] for name, child in self.children().items()}
        pids.update(self.row.extra_pids())
        for name, group in pids.items():
            seen = self.seen.setdefault(name, {})
            for pid in group:
                used = cpu_of(pid)
                if used is not None:
                    seen[pid] = max(used, seen.get(pid, 0.0))

    def snapshot(self) -> CpuSnapshot:
        """Return the CPU seconds of every measured process seen so far."""
        self.track()
        snap = CpuSnapshot(at=time.monotonic(), machine_busy=machine_busy_seconds())
        snap.by_name = {name: dict(seen) for name, seen in self.seen.items()}
        times = self.bench.cpu_times()
        snap.bench = times.user + times.system
        return snap

    def delta(self, start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """Return CPU seconds per process name between two snapshots.

        A process born in between counts from zero; "other" is what the rest of
        the machine (other users, kernel threads) used meanwhile.
        """
        used: dict[str, float] = {}
        for name, pids in end.by_name.items():
            before = start.by_name.get(name, {})
            used[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in pids.items())
        used["bench driver"] = end.bench - start.bench
        total = end.machine_busy - start.machine_busy
        used["other (not ours)"] = max(0.0, total - sum(used.values()))
        used["machine busy"] = total
        return used

    def peak_rss(self) -> dict[str, int]:
        """Return the peak RSS in bytes of each process started for this row."""
        return {name: child.sample_rss() for name, child in self.children().items()}
