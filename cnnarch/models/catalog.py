"""The model catalog: the registry's facts copied into a data file, ``catalog.json`` beside
this module, so that ``cnnarch models`` and ``cnnarch.list_models`` answer without torch.

:func:`build_catalog` computes the catalog from the registry (one row per entry, in
registry order); ``python -m cnnarch.models.catalog`` rewrites ``catalog.json`` from it.
The test suite checks that the file equals :func:`build_catalog`, so the two cannot drift.
The file is read by ``cnnarch.model_catalog`` at the package's top level, which loads
without importing this package (and so without torch).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .registry import AUX_NOTE, CONVENTION, MODELS, ModelEntry

CATALOG_PATH = Path(__file__).with_name("catalog.json")


def entry_row(entry: ModelEntry) -> dict:
    """One model's row: the registered facts and every option with its default."""
    return {"name": entry.name, "family": entry.family, "input_size": list(entry.input_size),
            "depth": entry.depth, "params": entry.params, "macs": entry.macs,
            "flops": entry.flops, "options": dict(entry.defaults),
            "description": entry.description}


def build_catalog() -> dict:
    """The catalog as ``catalog.json`` holds it: the counting convention, the note on what
    the counts leave out, and one row per registered model."""
    return {"convention": CONVENTION, "note": AUX_NOTE,
            "models": [entry_row(entry) for entry in MODELS.values()]}


def catalog_text(catalog: dict) -> str:
    return json.dumps(catalog, indent=1) + "\n"


def write_catalog(path: str | os.PathLike = CATALOG_PATH) -> Path:
    """Write :func:`build_catalog` to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(catalog_text(build_catalog()))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
