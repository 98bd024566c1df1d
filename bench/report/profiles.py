"""py-spy's own-time rankings under the table; the raw stacks moved beside the results.

`python -m bench.report.profiles FILE` prints the own-time ranking of a saved
collapsed-stack file again.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from bench.support.profile import own_time


def profile_text(results: dict[str, Any]) -> str:
    """Return the py-spy own-time rankings of every row that was profiled."""
    lines = []
    for row_name, row in results["rows"].items():
        profile = row.get("profile")
        if not profile:
            continue
        rate = row.get("profile_rate")
        lines += [
            "",
            f"py-spy, {row_name} offered {rate:,.0f} msg/s: own time, share of busy samples "
            "(idle waits dropped)"
            if rate
            else f"py-spy, {row_name}: own time, share of busy samples (idle waits dropped)",
        ]
        for name, item in profile.items():
            if not isinstance(item, dict) or "error" in item:
                lines.append(f"  {name}: {item.get('error') if isinstance(item, dict) else item}")
                continue
            lines.append(f"  {name} ({item['samples']} samples, busy {item['busy_share']:.0%}):")
            lines += [f"    {share:6.1%}  {frame}" for frame, share in item["own"][:10]]
    return "\n".join(lines)


def collect_profiles(results: dict[str, Any], out: Path, run_id: str) -> None:
    """Move py-spy outputs next to the results before the work folder goes."""
    workdir = Path(results.get("workdir", ""))
    for row_name, row in results["rows"].items():
        for item in (row.get("profile") or {}).values():
            if isinstance(item, dict) and item.get("file"):
                source = Path(item["file"])
                if source.exists():
                    out.mkdir(parents=True, exist_ok=True)
                    # A row's phases record into folders of their own (same process names).
                    phase = "" if source.parent == workdir else f"{source.parent.name}-"
                    target = out / f"{run_id}-{row_name}-{phase}{source.name}"
                    shutil.move(source, target)
                    item["file"] = str(target)


if __name__ == "__main__":
    total, own, _ = own_time(Path(sys.argv[1]).read_text())
    for frame, count in own:
        print(f"{count / total:6.1%}  {frame}")
