"""Registry: every entry builds at its native size; bad names and options are clear errors."""

import inspect
import math

import pytest
import torch
from torch import nn

from cnnarch.errors import UserError
from cnnarch.models import MODELS, create_model, get_entry, list_models
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
    assert set(list_models(family="resnet-cifar")) == {f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)}


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


@pytest.mark.parametrize("name", list(MODELS))
def test_every_listed_option_is_accepted_by_the_builder(name):
    entry = MODELS[name]
    params = inspect.signature(entry.builder).parameters
    assert set(entry.options) == {k for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    with torch.device("meta"):  # every option given explicitly, at its default
        model = create_model(name, **dict(entry.defaults))
    assert model.registry_name == name and model.num_classes == entry.defaults["num_classes"]


def test_googlenet_options_reach_the_model():
    assert create_model("googlenet", dropout=0.5, aux_logits=False).dropout.p == 0.5
    assert create_model("googlenet_tv", aux_dropout=0.3).aux1.dropout.p == 0.3


def _main_path_layers(model):
    """Conv and linear layers outside the shortcuts (the depth the papers count)."""
    return sum(1 for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               and "downsample" not in n and not n.startswith(("aux1", "aux2")))


@pytest.mark.parametrize("name", list(MODELS))
def test_depth_is_the_number_of_weighted_layers(name):
    entry = MODELS[name]
    with torch.device("meta"):
        model = create_model(name)
    if entry.family == "googlenet":  # Sec. 5: 22 layers deep counting layers with parameters
        assert entry.depth == 22
        modules = model.inception_modules()
        assert 3 + 2 * len(modules) + 1 == entry.depth  # conv1..conv3, two per module, fc
    else:
        assert _main_path_layers(model) == entry.depth
        assert name.endswith(str(entry.depth))


def test_patterns_and_families():
    assert list_models("resnet*") == [n for n in MODELS if n.startswith("resnet")]
    assert "resnet50" in list_models("resnet*") and "plain18" not in list_models("resnet*")
    assert list_models("*googlenet*") == ["googlenet", "googlenet_tv", "googlenet_small"]
    assert list_models("preact_resnet1?1") == []
    assert list_models("preact_resnet1??") == ["preact_resnet110", "preact_resnet164"]
    assert list_models("resnet*", family="resnet-cifar") == [
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"]
    assert list_models(family="preact-cifar") == list_models("preact_*")
    assert list_models("nothing*") == []
    with pytest.raises(UserError, match="pattern"):
        list_models(3)


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"num_classes": True}, "num_classes=True"), ({"num_classes": 2.5}, "num_classes=2.5"),
    ({"num_classes": math.nan}, "num_classes=nan"), ({"num_classes": "10"}, "num_classes='10'"),
    ({"num_classes": 0}, "num_classes=0"), ({"in_chans": True}, "in_chans=True"),
    ({"in_chans": 1.0}, "in_chans=1.0"), ({"in_chans": -1}, "in_chans=-1"),
    ({"norm": "ln"}, "norm='ln'"), ({"norm": 1}, "norm=1"), ({"dropout": math.nan}, "dropout=nan"),
    ({"dropout": 1.5}, "dropout"), ({"aux_logits": 1}, "aux_logits=1"),
    ({"inception": None}, "inception=None"), ({"weights": 3}, "weights=3"),
    ({"pretrained": "yes"}, "pretrained='yes'"),
])
def test_bad_arguments_name_the_argument(kwargs, word):
    with pytest.raises(UserError, match=word.replace("(", r"\(").replace(".", r"\.")):
        create_model("googlenet_small", **kwargs)


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model"):
        get_entry(None)
    with pytest.raises(UserError, match="unknown model"):
        create_model("resnet51")


def test_pretrained_calls_the_loader(monkeypatch):
    from cnnarch.models import pretrained

    calls = []
    monkeypatch.setattr(pretrained, "load_pretrained", lambda m, n, w: calls.append((n, w)) or m)
    with torch.device("meta"):
        create_model("resnet18")
        create_model("resnet18", pretrained=True)
        create_model("resnet18", weights="IMAGENET1K_V1")
    assert calls == [("resnet18", None), ("resnet18", "IMAGENET1K_V1")]
