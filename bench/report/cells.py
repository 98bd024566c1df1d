"""Cells and lines shared by the sections under the ingest table: numbers, grids, CPU lines."""

from __future__ import annotations

from typing import Any

# Processes listed under each row, in this order; others follow.
PROCESS_ORDER = (
    "daphne 1",
    "daphne 2",
    "ingest",
    "bridge",
    "redis (shared)",
    "postgres",
    "mosquitto",
    "publisher",
    "firmware-sim",
    "ws-clients 1",
    "ws-clients 2",
    "commander",
    "http-clients",
    "probe",
    "bench driver",
)


def ms(value: float | None, digits: int = 0) -> str:
    """Format milliseconds, or a dash."""
    return "—" if value is None else f"{value:,.{digits}f}"


def share(value: float | None) -> str:
    """Format a share as a percentage, or a dash."""
    return "—" if value is None else f"{value:.1%}"


def grid(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Return a plain text table: the first `left` columns left-aligned, the rest right."""
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    return [render(header), render(["-" * w for w in widths]), *(render(row) for row in rows)]


def cpu_line(cpu: dict[str, Any] | None, cpus: int | None) -> str:
    """Return cores (and current RSS) per process, and the machine's load."""
    if not cpu:
        return "cpu: —"
    cores, rss = cpu["cores"], cpu.get("rss_mb", {})
    names = [n for n in PROCESS_ORDER if n in cores] + sorted(set(cores) - set(PROCESS_ORDER))
    parts = [
        f"{name} {cores[name]:.2f}" + (f" ({rss[name]:,.0f} MB)" if name in rss else "")
        for name in names
    ]
    other = cpu["other_cores"]
    flag = "  ← DISTURBED by other load" if other > 0.25 else ""
    return (
        "cores (RSS now): "
        + ", ".join(parts)
        + f"; machine busy {cpu['machine_busy_cores']:.2f} of {cpus} cores, "
        + f"{other:.2f} not ours{flag}"
    )


def header_line(title: str, row: dict[str, Any]) -> str:
    """Return a row's title with its runtime."""
    seconds = row.get("seconds")
    took = f"ran {seconds / 60:.1f} min" if seconds is not None else "did not run"
    return f"{title} ({took})"


def verdict(met: bool | None) -> str:
    """Format whether a target was met."""
    return "MET" if met else "MISSED"
