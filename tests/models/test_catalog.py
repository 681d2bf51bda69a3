"""The model catalog (catalog.json) holds exactly what the registry computes, for every model."""

import json

import pytest

import cnnarch
from cnnarch.models import MODELS, list_models
from cnnarch.models.catalog import CATALOG_PATH, build_catalog, catalog_text


def test_catalog_file_equals_the_registry():
    stored = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    built = build_catalog()
    assert [m["name"] for m in stored["models"]] == list(MODELS)
    for ours, fresh in zip(stored["models"], built["models"], strict=True):
        assert ours == fresh, f"{fresh['name']}: run `python -m cnnarch.models.catalog`"
    assert stored == built
    assert CATALOG_PATH.read_text(encoding="utf-8") == catalog_text(built)


def test_catalog_rows_are_the_entries_facts():
    rows = {r["name"]: r for r in cnnarch.model_catalog().rows}
    for name, entry in MODELS.items():
        row = rows[name]
        assert (row["params"], row["macs"], row["depth"]) == (entry.params, entry.macs, entry.depth)
        assert tuple(row["input_size"]) == entry.input_size and row["family"] == entry.family
        assert row["options"] == dict(entry.defaults) and row["flops"] == entry.flops


@pytest.mark.parametrize(("pattern", "family"), [
    (None, None), ("resnet*", None), ("*googlenet*", None), ("preact_resnet1??", None),
    ("preact_resnet1?1", None), ("resnet*", "resnet-cifar"), (None, "preact-cifar"),
    ("nothing*", None), ("RESNET*", None),
])
def test_top_level_list_models_matches_the_registry(pattern, family):
    assert cnnarch.list_models(pattern, family=family) == list_models(pattern, family=family)


def test_bad_pattern_is_a_user_error():
    with pytest.raises(cnnarch.errors.UserError, match="pattern"):
        cnnarch.list_models(3)
