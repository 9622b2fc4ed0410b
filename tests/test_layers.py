"""The import graph of src/flext_observability: no circle, and no import from a lower layer
to a higher one. The imports are read from the source (ast), nothing is imported; every
import counts, also those under `if TYPE_CHECKING:` and those inside a function.

The layers, lowest first (a module may import its own layer and those below it):

    ground     signals, routes, retry, settings, tls, tasks, logs, startup, refusals/log
    models     models/, config, and each component's settings model (<component>/config.py,
               pipeline/kafka/config.py)
    pipeline   pipeline/, telemetry
    components receivers/, processors/, exporters/, health/, refusals/
    assembly   components (the registry), builder, collector, app, serving, server, workers/,
               reload/, status/
    entry      cli, __main__

The SDK (sdk/ and the package's `__init__`) stands beside them: it imports the ground floor,
models/ and itself only, and nothing but the SDK imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = "flext_observability"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("signals", "routes", "retry", "settings", "tls", "tasks", "logs", "startup",
                "refusals.log")),
    ("models", ("models", "config")),
    ("pipeline", ("pipeline", "telemetry")),
    ("components", ("receivers", "processors", "exporters", "health", "refusals")),
    ("assembly", ("components", "builder", "collector", "app", "serving", "server", "workers",
                  "reload", "status")),
    ("entry", ("cli", "__main__")),
)
SDK = "sdk"
# What the SDK may import besides itself.
SDK_MAY_IMPORT = ("ground", "models")


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> its file, for every .py file under `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    # `from . import x` in a package's __init__ is relative to the package itself.
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Each module -> the package's modules it imports (`from a import b` is a.b when b is
    a module, else a)."""
    modules = module_files(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, node, path.name == "__init__.py")
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.add(child if child in modules else base)
        graph[name] = {
            t for t in targets if t != name and (t == package or t.startswith(package + "."))
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str, package: str = PACKAGE) -> str:
    """The layer of a module of the package; KeyError for a module in no layer."""
    if module == package:
        return SDK
    relative = module.removeprefix(package + ".")
    top = relative.split(".")[0]
    if top == SDK:
        return SDK
    # The most specific entry names the layer: a package (`refusals`) or one of its modules
    # (`refusals.log`, which the self-telemetry below the components counts with).
    entries = [(entry, layer) for layer, tops in LAYERS for entry in tops
               if relative == entry or relative.startswith(entry + ".")]
    if entries:
        layer = max(entries, key=lambda found: len(found[0]))[1]
        # A component's settings model (`exporters/debug/config.py`) sits with the
        # models: the top-level config composes it, the component imports it.
        if layer in ("pipeline", "components") and module.rsplit(".", 1)[-1] == "config":
            return "models"
        return layer
    raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def violations(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
    """Every import from a lower layer to a higher one, and every import the SDK's rule
    forbids."""
    rank = {layer: i for i, (layer, _) in enumerate(LAYERS)}
    found = []
    for source, targets in sorted(graph.items()):
        here = layer_of(source, package)
        for target in sorted(targets):
            there = layer_of(target, package)
            if here == SDK:
                bad = there != SDK and there not in SDK_MAY_IMPORT
            elif there == SDK:
                bad = True
            else:
                bad = rank[there] > rank[here]
            if bad:
                found.append(f"{source} ({here}) imports {target} ({there})")
    return found


def _write(root: Path, files: Iterable[tuple[str, str]]) -> Path:
    for name, text in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_src_has_no_import_cycle() -> None:
    assert cycles(import_graph(SRC)) == []


def test_src_imports_only_down_the_layers() -> None:
    assert violations(import_graph(SRC)) == []


def test_every_module_is_in_a_layer() -> None:
    for module in module_files(SRC):
        layer_of(module)


def test_a_cycle_is_found_also_through_type_checking_and_function_imports(
    tmp_path: Path,
) -> None:
    root = _write(tmp_path / PACKAGE, [
        ("__init__.py", ""),
        ("tls.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from flext_observability.config import X\n"),
        ("config.py", "def f():\n    from flext_observability import tls\n"),
        ("tasks.py", "from . import logs\n"),
        ("logs.py", ""),
    ])
    graph = import_graph(root)
    assert graph[f"{PACKAGE}.tasks"] == {f"{PACKAGE}.logs"}
    assert cycles(graph) == [[f"{PACKAGE}.config", f"{PACKAGE}.tls"]]


def test_an_upward_import_and_an_sdk_import_are_violations(tmp_path: Path) -> None:
    root = _write(tmp_path / PACKAGE, [
        ("__init__.py", ""),
        ("pipeline/__init__.py", ""),
        ("pipeline/exporter.py", "from flext_observability.exporters.jaeger import exporter\n"),
        ("exporters/jaeger/exporter.py", "import flext_observability.pipeline.exporter\n"),
        ("sdk/client.py", "from flext_observability.pipeline import exporter\n"),
        ("cli.py", "from flext_observability.sdk.client import X\n"),
    ])
    graph = import_graph(root)
    assert violations(graph) == [
        f"{PACKAGE}.cli (entry) imports {PACKAGE}.sdk.client (sdk)",
        f"{PACKAGE}.pipeline.exporter (pipeline) imports "
        f"{PACKAGE}.exporters.jaeger.exporter (components)",
        f"{PACKAGE}.sdk.client (sdk) imports {PACKAGE}.pipeline.exporter (pipeline)",
    ]
    assert cycles(graph) == [
        [f"{PACKAGE}.exporters.jaeger.exporter", f"{PACKAGE}.pipeline.exporter"]
    ]


def test_a_component_settings_model_is_below_the_top_level_config() -> None:
    assert layer_of(f"{PACKAGE}.exporters.debug.config") == "models"
    assert violations({
        f"{PACKAGE}.config": {f"{PACKAGE}.exporters.debug.config"},
        f"{PACKAGE}.exporters.debug.config": {f"{PACKAGE}.exporters.debug.exporter"},
    }) == [
        f"{PACKAGE}.exporters.debug.config (models) imports "
        f"{PACKAGE}.exporters.debug.exporter (components)"
    ]


def test_a_module_in_no_layer_is_named() -> None:
    with pytest.raises(KeyError, match=r"flext_observability\.newthing is in no layer"):
        layer_of(f"{PACKAGE}.newthing")
