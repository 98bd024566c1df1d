"""The alarms app sits below telemetry: it imports devices and core, never telemetry nor hub."""

from __future__ import annotations

import ast
from pathlib import Path

ALARMS = Path(__file__).resolve().parents[2] / "alarms"


def test_alarms_imports_neither_telemetry_nor_bridges_nor_hub():
    found = set()
    for path in ALARMS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    top = {name.split(".")[0] for name in found}
    assert not top & {"telemetry", "bridges", "firmware_sim", "hub"}, sorted(found)
