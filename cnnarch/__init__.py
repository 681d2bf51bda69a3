"""cnnarch: GoogLeNet and ResNet as the papers describe them, with the tools to measure them.

``list_models`` and ``model_catalog`` read the model catalog (the registry's facts, kept in
``cnnarch/models/catalog.json`` by ``cnnarch.models.catalog``); ``create_model`` is loaded
on first use. ``import cnnarch`` and listing the models do not import torch, so
``cnnarch --help`` and ``cnnarch models`` start fast.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = ["ModelCatalog", "create_model", "list_models", "model_catalog"]

_CATALOG_FILE = Path(__file__).resolve().parent / "models" / "catalog.json"


@dataclass(frozen=True)
class ModelCatalog:
    """Registered models with their facts (``rows``: one dict per model, registry order)."""

    convention: str  # how params and MACs are counted
    note: str  # what the counts leave out
    rows: tuple[dict, ...]

    @property
    def names(self) -> list[str]:
        return [row["name"] for row in self.rows]

    def to_dict(self) -> dict:
        return {"convention": self.convention, "note": self.note, "models": list(self.rows)}

    def render(self) -> str:
        """The table of ``cnnarch models``: one line per model, its counts at the native size."""
        header = ["model", "family", "input", "params", "MACs", "description"]
        cells = [[r["name"], r["family"], "x".join(map(str, r["input_size"])), f"{r['params']:,}",
                  _giga_or_mega(r["macs"]), r["description"]] for r in self.rows]
        widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
        lines = ["  ".join(c.rjust(w) if i in (3, 4) else c.ljust(w)
                           for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()
                 for line in [header, *cells]]
        return "\n".join([f"Registered models at their native input size. {self.convention}.",
                          *lines, f"{self.note}."])


def _giga_or_mega(n: int) -> str:
    return f"{n / 1e9:.3f} G" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _catalog() -> dict:
    try:
        return json.loads(_CATALOG_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:  # an installation without the data file: ask the registry (torch)
        from .models.catalog import build_catalog

        return build_catalog()


def model_catalog(pattern: str | None = None, *, family: str | None = None) -> ModelCatalog:
    """The registered models matching a shell-style (timm) ``pattern`` such as ``"resnet*"``
    (all when None), of one ``family`` when given, with their registered facts."""
    if pattern is not None and not isinstance(pattern, str):
        raise UserError(f"pattern must be a string such as 'resnet*', got {pattern!r}")
    data = _catalog()
    rows = tuple(row for row in data["models"]
                 if (pattern is None or fnmatch.fnmatchcase(row["name"], pattern))
                 and (family is None or row["family"] == family))
    return ModelCatalog(data["convention"], data["note"], rows)


def list_models(pattern: str | None = None, *, family: str | None = None) -> list[str]:
    """Registered model names in registry order, e.g. ``list_models("resnet*")``."""
    return model_catalog(pattern, family=family).names


def __getattr__(name: str):
    if name == "create_model":
        from .models import create_model

        return create_model
    raise AttributeError(f"module 'cnnarch' has no attribute {name!r}")
