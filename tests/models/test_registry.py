"""Registry: every entry builds at its native size; bad names and options are clear errors."""

import pytest
import torch

from cnnarch.models import MODELS, create_model, list_models
from cnnarch.models.layers import check_input

EXPECTED = {
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
    "plain20", "plain32", "plain44", "plain56", "plain110",
    "googlenet", "googlenet_tv", "googlenet_small",
    "preact_resnet20", "preact_resnet56", "preact_resnet110", "preact_resnet164", "preact_resnet1001",
}
DEEP = {"resnet1202", "resnet152", "resnet101", "preact_resnet164", "preact_resnet1001"}


def test_all_names_registered():
    assert set(list_models()) == EXPECTED
    assert set(list_models("resnet-cifar")) == {f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)}


@pytest.mark.parametrize("name", sorted(EXPECTED - DEEP))
def test_output_shape_at_native_size(name):
    entry = MODELS[name]
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *entry.input_size))
    assert out.shape == (1, 3)


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_models_on_meta_device(name):
    entry = MODELS[name]
    with torch.device("meta"):
        model = create_model(name).eval()
        out = model(torch.empty(2, *entry.input_size))
    assert out.shape == (2, model.num_classes)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean .*resnet50"):
        create_model("resnet05")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match="valid options: .*shortcut"):
        create_model("resnet20", width=2)


@pytest.mark.parametrize("kwargs,word", [
    ({"shortcut": "D"}, "shortcut"), ({"stride_at": "5x5"}, "stride_at"), ({"norm": "ln"}, "norm"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_option_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        create_model("resnet50", **kwargs)


def test_bad_googlenet_option_value():
    with pytest.raises(ValueError, match="inception"):
        create_model("googlenet", inception="wide")


@pytest.mark.parametrize("x,pattern", [
    (torch.randn(1, 1, 32, 32), "3 input channels, got 1"),
    (torch.randn(3, 32, 32), "4-d batch"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
    (torch.randn(0, 3, 32, 32), "empty batch"),
])
def test_bad_tensors_are_clear_errors(x, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        create_model("resnet20")(x)


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 223x223"):
        check_input("googlenet", torch.randn(1, 3, 100, 100), 3, create_model("googlenet").min_input_size)
