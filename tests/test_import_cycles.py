"""No import cycle; the packages and bench's folders import one way; imports resolve.

Every import counts, wherever it is written: at module level, inside a function
(a lazy import that only hides a cycle) or under `if TYPE_CHECKING:` (a cycle
in the design all the same). The graph is read from the source with `ast`, so
no module is imported; `graphlib` finds the cycles. Every import of a project
module (tests included) and every `python -m bench.…` child must name a module
and a name that exist: nothing but the bench imports the bench, so a moved
module would otherwise show only when someone runs it.
"""

from __future__ import annotations

import ast
import graphlib
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# At least these; any other top-level package of the checkout (alarms, …) is walked too.
PACKAGES = {"hub", "devices", "telemetry", "bridges", "firmware_sim", "bench"}
# What each folder of bench may import of bench (bench/README.md, "Files"). The modules at
# bench's top (run, options, ingest) may import everything.
BENCH_LAYERS = {
    "bench.support": {"bench.support"},
    "bench.load": {"bench.load", "bench.support"},
    "bench.report": {"bench.report", "bench.load", "bench.support"},
    "bench.rows": {"bench.rows", "bench.load", "bench.support"},
}

# The packages' layers, lowest first (docs/architecture.md): each imports only its own layer
# and those below it. `hub`, the composition root, and `bench` may import everything;
# `firmware_sim` none of them (it speaks only MQTT).
LAYERS = ["core", "devices", "apikeys", "provisioning", "alarms", "telemetry", "bridges"]
UNLAYERED = {"hub", "bench", "firmware_sim"}


def project_packages(root: Path) -> list[str]:
    """Return the top-level packages of the checkout (folders with an __init__.py), not tests."""
    return sorted(
        path.parent.name
        for path in root.glob("*/__init__.py")
        if path.parent.name not in {"tests", "node_modules"}
    )


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Return every module of `packages` by its dotted name (a package by its own name)."""
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Return the dotted names a module imports, anywhere in its source, made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from a import b` imports a.b when b is a module, else a.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Return, for every module of `packages`, the modules of `packages` it imports."""
    modules = module_files(root, packages)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = {owner(name) for name in imported_names(module, path)}
        graph[module] = {target for target in targets if target and target != module}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle of the graph (first module repeated last), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))
    return None


def bound_names(path: Path) -> set[str] | None:
    """Return the names a module binds outside its functions and classes (None: cannot tell)."""
    names = set()
    pending: list[ast.AST] = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == "__getattr__":
                return None  # a module that makes names on demand
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(
                name.id
                for target in targets
                for name in ast.walk(target)
                if isinstance(name, ast.Name)
            )
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        else:  # the bodies of if, try (and its handlers), with, for at module level
            pending += [
                child
                for child in ast.iter_child_nodes(node)
                if isinstance(child, ast.stmt | ast.excepthandler)
            ]
    return names


def dangling_references(
    root: Path, packages: Iterable[str], *, children_of: Iterable[str] = ()
) -> list[str]:
    """Return the imports of `packages` that name a module or name of them that does not exist.

    For the packages in `children_of`, a string that looks like one of their
    modules (`python -m bench.load.publisher`: a child process, not an import) must be one.
    """
    modules = module_files(root, packages)
    tops = {name.split(".")[0] for name in modules}
    child = re.compile(rf"^({'|'.join(map(re.escape, children_of)) or '(?!)'})(\.\w+)+$")
    wrong = []
    for module, path in sorted(modules.items()):
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join([*anchor, *([node.module] if node.module else [])])
                if target.split(".")[0] not in tops:
                    continue
                if target not in modules:
                    wrong.append(f"{module}: from {target} (no such module)")
                    continue
                defined = bound_names(modules[target])
                wrong += [
                    f"{module}: {target}.{alias.name} (not defined there)"
                    for alias in node.names
                    if defined is not None
                    and alias.name != "*"
                    and alias.name not in defined
                    and f"{target}.{alias.name}" not in modules
                ]
            elif isinstance(node, ast.Import):
                wrong += [
                    f"{module}: import {alias.name} (no such module)"
                    for alias in node.names
                    if alias.name.split(".")[0] in tops and alias.name not in modules
                ]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and child.match(node.value)
                and node.value not in modules
            ):
                wrong.append(f"{module}: {node.value!r} (no such module)")
    return wrong


def test_the_packages_walked_are_the_projects():
    found = set(project_packages(ROOT))
    assert found >= PACKAGES, sorted(PACKAGES - found)
    graph = import_graph(ROOT, found)
    assert {"bench.rows.runner", "hub.settings", "telemetry.codec"} <= graph.keys()
    assert "bench.rows.driver" in graph["bench.rows.burst"]


def test_project_packages_have_no_import_cycle():
    cycle = import_cycle(import_graph(ROOT, project_packages(ROOT)))
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def layer_violations(graph: dict[str, set[str]], layers: list[str]) -> list[str]:
    """Return the imports of a layered package that reach above its layer or outside them."""
    wrong = []
    for module, targets in sorted(graph.items()):
        top = module.split(".")[0]
        if top not in layers:
            continue
        allowed = set(layers[: layers.index(top) + 1])
        wrong += [
            f"{module} → {target}"
            for target in sorted(targets)
            if target.split(".")[0] not in allowed
        ]
    return wrong


def test_every_package_has_its_place_in_the_layers():
    assert set(project_packages(ROOT)) == set(LAYERS) | UNLAYERED


def test_apps_import_downward_and_never_hub():
    # hub is the composition root: settings, URLs, ASGI, commands, startup. An app that
    # imported it would reach up past every layer (and drag in the settings module).
    wrong = layer_violations(import_graph(ROOT, project_packages(ROOT)), LAYERS)
    assert not wrong, "\n".join(wrong)


def test_firmware_sim_imports_no_package_of_the_hub():
    graph = import_graph(ROOT, project_packages(ROOT))
    wrong = [
        f"{module} → {target}"
        for module, targets in sorted(graph.items())
        if module.split(".")[0] == "firmware_sim"
        for target in sorted(targets)
        if target.split(".")[0] != "firmware_sim"
    ]
    assert not wrong, wrong


def test_an_import_up_the_layers_or_of_hub_is_reported():
    graph = {
        "core.conf": set(),
        "devices.models": {"core.conf"},
        "devices.views": {"telemetry.api"},
        "telemetry.api": {"devices.models", "hub.metrics"},
        "hub.metrics": {"telemetry.api"},
    }

    assert layer_violations(graph, ["core", "devices", "telemetry"]) == [
        "devices.views → telemetry.api",
        "telemetry.api → hub.metrics",
    ]


def test_bench_folders_import_one_way():
    graph = import_graph(ROOT, ["bench"])
    wrong = []
    for module, targets in sorted(graph.items()):
        folder = ".".join(module.split(".")[:2])
        allowed = BENCH_LAYERS.get(folder)
        if allowed is None:
            continue  # bench's top: the entry point and the command line
        wrong += [
            f"{module} → {target}"
            for target in sorted(targets)
            if ".".join(target.split(".")[:2]) not in allowed
        ]
    assert not wrong, wrong


def test_every_import_and_bench_child_names_something_that_exists():
    # A module or name moved without its users shows here, before anything runs them
    # (nothing but the bench imports the bench; merged branches may import old paths).
    packages = [*project_packages(ROOT), "tests"]
    wrong = dangling_references(ROOT, packages, children_of=["bench"])
    assert not wrong, "\n".join(wrong)


def test_a_moved_module_or_name_is_reported_where_it_is_still_used(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "here.py").write_text(
        "import os\nCONSTANT = 1\ndef helper(): ...\nif os.name:\n    LATER = 2\n"
    )
    (package / "user.py").write_text(
        "from pkg.sub.here import CONSTANT, helper, os\n"
        "from pkg.sub import here\n"
        "from pkg.sub.here import MOVED\n"
        "from pkg.gone import thing\n"
        "import pkg.sub.gone\n"
        "from .sub.gone import x\n"
        "try:\n    from pkg.sub.here import LATER\nexcept ImportError:\n    pass\n"
        "ARGV = ['python', '-m', 'pkg.sub.here', '-m', 'pkg.sub.gone']\n"
    )

    assert dangling_references(tmp_path, ["pkg"], children_of=["pkg"]) == [
        "pkg.user: pkg.sub.here.MOVED (not defined there)",
        "pkg.user: from pkg.gone (no such module)",
        "pkg.user: import pkg.sub.gone (no such module)",
        "pkg.user: from pkg.sub.gone (no such module)",
        "pkg.user: 'pkg.sub.gone' (no such module)",
    ]


def test_a_cycle_hidden_in_a_function_or_type_checking_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.c import C\n"
        "def late():\n    from . import a\n"
    )
    (package / "c.py").write_text("from .d import D\nclass C: ...\n")
    (package / "d.py").write_text("D = 1\n")

    graph = import_graph(tmp_path, ["pkg"])

    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a", "pkg.c"}
    assert graph["pkg.c"] == {"pkg.d"}
    cycle = import_cycle(graph)
    assert cycle is not None and set(cycle) == {"pkg.a", "pkg.b"}
    assert cycle[0] == cycle[-1]
    graph["pkg.b"].discard("pkg.a")
    assert import_cycle(graph) is None
