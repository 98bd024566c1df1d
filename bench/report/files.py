"""What a run leaves in bench/results/: the JSON record and the throughput/latency plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.report.table import ladder_rows


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the full record of the run."""
    path.write_text(json.dumps(results, indent=1, default=str))


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw consumed rate and latency against offered rate, one series per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 9), sharex=True)
    colours = {"ceiling": "tab:gray", "hub": "tab:blue", "scale": "tab:green", "naive": "tab:red"}
    highest, lowest = 1.0, math.inf
    for name, row in ladder_rows(results):
        steps = sorted(
            [*row.get("steps", []), *([row["latency"]] if row.get("latency") else [])],
            key=lambda step: step["offered"],
        )
        if not steps:
            continue
        colour = colours.get(name, "tab:green")
        x = [step["offered"] for step in steps]
        highest, lowest = max(highest, *x), min(lowest, *x)
        top.plot(x, [step["consumed"] for step in steps], "-", color=colour, alpha=0.5)
        for step in steps:
            top.plot(
                step["offered"],
                step["consumed"],
                "o",
                color=colour,
                fillstyle="full" if step["flat"] else "none",
            )
        top.plot([], [], "o-", color=colour, label=name)
        for kind, style in (("frame", "-"), ("commit", "--"), ("delivery", ":")):
            points = [
                (step["offered"], step["latency"][kind])
                for step in steps
                if (step.get("latency") or {}).get(kind, {}).get("n")
            ]
            if points:
                bottom.plot(
                    [p[0] for p in points],
                    [p[1]["p99"] for p in points],
                    style,
                    marker="o",
                    color=colour,
                    label=f"{name} {kind} p99",
                )
                bottom.plot(
                    [p[0] for p in points],
                    [max(p[1]["p50"], 0.1) for p in points],
                    style,
                    marker=".",
                    color=colour,
                    alpha=0.4,
                    label=f"{name} {kind} p50",
                )
    top.plot(
        [lowest, highest], [lowest, highest], ":", color="black", linewidth=0.8, label="= offered"
    )
    top.set_xscale("log")
    top.set_yscale("log")
    top.set_ylabel("consumed msg/s (filled: backlog flat)")
    top.set_title(f"telemetry hub bench {results['run_id']}: 3 readings per message")
    top.legend(loc="upper left")
    top.grid(alpha=0.3, which="both")
    bottom.axhline(100, color="black", linewidth=0.8, linestyle=":", label="100 ms target")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency from publish, ms (log)")
    bottom.set_xlabel("offered msg/s")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    bottom.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
