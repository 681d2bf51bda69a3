"""cnnarch's modules import each other in one direction: the import graph has no cycle.

Every ``import`` counts, at module level or inside a function (a cycle through a
function-local import is still two modules that each need the other). ``from .pkg import
name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` itself.
"""

import ast
import subprocess
import sys
from pathlib import Path

import cnnarch

ROOT = Path(cnnarch.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["cnnarch", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_relative_and_local_imports():
    graph = import_graph()
    assert "cnnarch.inference.fastpath" in graph["cnnarch.inference.quantize"]
    assert "cnnarch.errors" in graph["cnnarch.precision"]
    assert "cnnarch.precision" in graph["cnnarch.inference.precision"]  # the older name
    assert "cnnarch.hardware" in graph["cnnarch.precision"]  # a function-local import
    assert "cnnarch.inference.quantize" in graph["cnnarch.inference.api"]


def test_no_import_cycle_inside_cnnarch():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_inference_layers_import_in_one_direction():
    order = ["hardware", "precision", "fold", "check", "fastpath", "quantize", "api", "bench"]
    graph = import_graph()
    for i, name in enumerate(order):
        later = {f"cnnarch.inference.{m}" for m in order[i + 1:]}
        assert not graph[f"cnnarch.inference.{name}"] & later, name


def test_help_does_not_import_torch():
    code = ("import sys; from cnnarch.cli import build_parser; "
            "build_parser('').format_help(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
