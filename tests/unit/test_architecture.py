"""The package layout ARCHITECTURE.md describes: layers imported downwards only, no import cycle.

Every import counts, also those inside functions (a lazy import is still a dependency; it only
hides a cycle from the interpreter, not from a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("benchmark", "baselines", "neural")

#: Layers from the bottom: a module may import its own layer and those below, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "benchmark",
        "benchmark.errors",
        "benchmark.fingerprint",
        "benchmark.seeds",
        "benchmark.faults",
        "benchmark.io",
        "benchmark.redaction",
        "benchmark.threads",
    ),
    ("benchmark.data",),
    ("benchmark.models", "benchmark.registry", "benchmark.config"),
    ("benchmark.splits", "benchmark.portable", "benchmark.services"),
    ("benchmark.tracking",),
    ("benchmark.evaluation",),
    ("benchmark.preflight", "benchmark.tuning", "benchmark.external"),
    ("benchmark.reporting",),
    ("benchmark.cli",),
)
#: Model packages (plug-ins) may use the model contract and the data, nothing that runs them.
PLUGIN_MAY_IMPORT = {"benchmark.errors", "benchmark.seeds", "benchmark.data", "benchmark.models"}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The modules of this project that ``path`` imports (``from pkg import sub`` names ``pkg.sub``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            out.update(subs if len(subs) == len(node.names) else [node.module, *subs])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in MODULES}


GRAPH = {m: _imports(p) - {m} for m, p in MODULES.items()}


def _layer(module: str) -> int:
    best = (-1, -1)  # (prefix length, layer): the longest matching prefix decides
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), i)
    if best[1] < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to ARCHITECTURE.md)")
    return best[1]


def test_the_import_walk_sees_the_packages() -> None:
    # a walk that found nothing would pass everything below
    assert len(MODULES) > 60
    assert "benchmark.tuning.prepare" in GRAPH["benchmark.tuning.cell"]
    assert "benchmark.tuning.steps" in GRAPH["benchmark.tuning.worker"]


def test_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def test_benchmark_imports_only_downwards() -> None:
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in sorted(GRAPH.items())
        if a.startswith("benchmark")
        for b in sorted(targets)
        if b.startswith("benchmark") and _layer(b) > _layer(a)
    ]
    assert upward == []


@pytest.mark.parametrize("plugin", ["baselines", "neural"])
def test_model_packages_use_only_the_contract_and_the_data(plugin: str) -> None:
    used = {
        (a, b)
        for a, targets in GRAPH.items()
        if a.split(".")[0] == plugin
        for b in targets
        if not b.startswith(plugin) and not any(b == p or b.startswith(p + ".") for p in PLUGIN_MAY_IMPORT)
    }
    assert used == set()


def test_benchmark_never_imports_a_model_package() -> None:
    # models are found through the registry's YAML files (import paths as strings), never imported
    assert {
        (a, b)
        for a, t in GRAPH.items()
        if a.startswith("benchmark")
        for b in t
        if b.split(".")[0] in ("baselines", "neural")
    } == set()


def test_the_core_and_the_baselines_never_import_torch() -> None:
    # torch is the ``neural`` extra: only the neural package may import it (tests/unit/test_torch_free.py
    # runs the core with torch absent).
    heavy = []
    for module, path in MODULES.items():
        if module.startswith(("baselines", "benchmark")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                heavy += [f"{module}: {n}" for n in names if n.split(".")[0] == "torch"]
    assert heavy == []


def test_no_tuning_module_is_longer_than_a_page_or_eight() -> None:
    long = {
        p.name: n
        for p in (ROOT / "benchmark" / "tuning").glob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert long == {}
