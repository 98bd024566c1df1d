"""py-spy the rows' Python processes under load; rank functions by their own time."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from bench.support.services import BIN

SAMPLE_RATE_HZ = 100
TOP = 15
# Leaf frames that mean "waiting for work": py-spy's idle detection misses some
# under --nonblocking, so they are dropped here.
IDLE_LEAVES = frozenset(
    {
        "EpollSelector.select (selectors.py)",
        "_worker (concurrent/futures/thread.py)",
        "Condition.wait (threading.py)",
    }
)
_LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """Return the py-spy executable of this environment, or one on PATH."""
    candidate = BIN / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def own_time(collapsed: str) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Return busy samples, the top leaf frames (own time) and top frames by inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        # py-spy puts the process and thread first; real frames look like "fn (file)".
        frames = [frame for frame in frames if frame.endswith(")") and " (" in frame]
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own.most_common(TOP), inclusive.most_common(TOP)


async def py_spy_record(targets: dict[str, int], seconds: float, workdir: Path) -> dict[str, Any]:
    """Record each target for `seconds`; return own-time rankings and the output files."""
    executable = py_spy()
    if executable is None:
        return {"error": "py-spy not found"}
    results: dict[str, Any] = {}
    jobs = {}
    for name, pid in targets.items():
        output = workdir / f"py-spy-{name.replace(' ', '-')}.txt"
        jobs[name] = (
            output,
            await asyncio.create_subprocess_exec(
                executable,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(SAMPLE_RATE_HZ),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            ),
        )
    for name, (output, process) in jobs.items():
        _, err = await process.communicate()
        if process.returncode != 0 or not output.exists():
            results[name] = {"error": err.decode(errors="replace")[-500:]}
            continue
        total, own, inclusive = own_time(output.read_text())
        expected = SAMPLE_RATE_HZ * seconds
        results[name] = {
            "samples": total,
            "busy_share": total / expected if expected else None,
            "own": [(frame, count / total) for frame, count in own] if total else [],
            "inclusive": [(frame, count / total) for frame, count in inclusive] if total else [],
            "file": str(output),
        }
    return results
