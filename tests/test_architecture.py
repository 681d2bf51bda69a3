"""The package's layers import in one direction, as docs/ARCHITECTURE.md draws them.

Each sub-package (or top-level module) of cnnarch belongs to one layer; a module may import
from its own layer and the layers below it, never from a layer above. Every import counts,
function-local ones too.
"""

import ast
from pathlib import Path

import cnnarch

ROOT = Path(cnnarch.__file__).resolve().parent
ARCHITECTURE = ROOT.parent / "docs" / "ARCHITECTURE.md"

# Lowest first: the order of docs/ARCHITECTURE.md's layer list.
LAYERS = (
    ("errors", "hardware", "model_options", "precision", "signals"),
    ("data",),
    ("models",),
    ("analysis", "train"),
    ("inference", "export", "quantize", "bench"),
    ("experiments", "report"),
    ("cli", "__main__", "__init__"),
)
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    """'cnnarch.train.loop' -> 'train'; 'cnnarch' and a name of the package's ``__init__``
    ('from . import model_catalog') -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LEVEL else "__init__"


def _imports(path: Path, root: Path) -> set[str]:
    rel = path.relative_to(root).with_suffix("").parts
    package = ["cnnarch", *rel[:-1]]  # the package a relative import starts from
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from .. import train
                    found.update(f"{module}.{a.name}" for a in node.names)
                    continue
            else:
                module = node.module or ""
            found.add(module)
    return {m for m in found if m == "cnnarch" or m.startswith("cnnarch.")}


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        unit = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for target in sorted(_imports(path, root)):
            if LEVEL[_unit(target)] > LEVEL[unit]:
                bad.append(f"{rel} imports {target}")
    return bad


def test_every_part_of_the_package_has_a_layer():
    units = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in ROOT.glob("*.py")}
    assert units <= set(LEVEL), f"not in a layer (add to LAYERS and ARCHITECTURE.md): {units - set(LEVEL)}"


def test_no_layer_imports_a_layer_above_it():
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path):
    fake = tmp_path / "cnnarch"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("from . import layers\n")
    (fake / "models" / "ok.py").write_text("from ..data import transform\n")
    (fake / "models" / "bad.py").write_text("def f():\n    from ..train import loop\n")
    assert upward_imports(fake) == ["models/bad.py imports cnnarch.train"]


def test_architecture_doc_lists_the_layers_in_this_order():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    positions = [text.index(f"`{layer[0]}`") for layer in LAYERS[:-1]]
    assert positions == sorted(positions)
