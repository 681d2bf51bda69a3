"""The speed transform (cnnarch.models.reorder): pools before ReLUs where the models declare
they commute; in training mode (BN batch statistics) the same outputs, gradients and running
statistics as the paper-order model, for every family in the registry."""

import copy

import pytest
import torch
from torch import nn

from cnnarch.models import MODELS, create_model
from cnnarch.models.reorder import reorder_for_speed, reordered_view, swappable_pairs

STEM = [("relu", "maxpool")]
GOOGLENET_STEM = [("conv1.relu", "maxpool1"), ("conv3.relu", "maxpool2")]
# family -> (model, options, the pairs it declares, input H = W): one model of every family of
# the registry, run forward and backward in both orders.
CASES = {
    "resnet-imagenet": ("resnet18", {}, STEM, 64),
    "plain-imagenet": ("plain18", {}, STEM, 64),
    "resnet-cifar": ("resnet20", {}, [], 32),
    "plain-cifar": ("plain20", {}, [], 32),
    "preact-cifar": ("preact_resnet20", {}, [], 32),
    "googlenet": ("googlenet_tv", {"aux_logits": False}, GOOGLENET_STEM, 64),
}


def test_every_family_is_covered():
    assert {e.family for e in MODELS.values()} == set(CASES)


def test_googlenet_pairs_follow_the_layout():
    with torch.device("meta"):  # shapes only: the paper's GoogLeNet needs 224 x 224 inputs
        lrn = create_model("googlenet")  # the paper's LRN sits between conv3's ReLU and the pool
        bn = create_model("googlenet", norm="bn")
        small = create_model("googlenet_small")  # no stem pools
    assert swappable_pairs(lrn) == [("conv1.relu", "maxpool1")]
    assert swappable_pairs(bn) == GOOGLENET_STEM
    assert swappable_pairs(small) == []


def _step(model, x):
    """One training-mode forward (BN batch statistics) and backward."""
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout mask
    out = model(x)
    out.square().mean().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    stats = {k: b.clone() for k, b in model.named_buffers()}
    return out.detach(), grads, stats


def _assert_same(fast, paper):
    (out_f, grads_f, stats_f), (out_p, grads_p, stats_p) = fast, paper
    torch.testing.assert_close(out_f, out_p, rtol=1e-6, atol=1e-7)
    assert grads_f.keys() == grads_p.keys()
    for key, grad in grads_p.items():
        torch.testing.assert_close(grads_f[key], grad, rtol=1e-5, atol=1e-7, msg=key)
    for key, stat in stats_p.items():
        torch.testing.assert_close(stats_f[key], stat, rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reordered_copy_computes_the_same_function_and_gradients(case):
    name, kwargs, pairs, size = CASES[case]
    torch.manual_seed(0)
    paper = create_model(name, **kwargs).train()
    fast = reorder_for_speed(copy.deepcopy(paper))
    assert swappable_pairs(paper) == pairs and swappable_pairs(fast) == []
    assert list(fast.state_dict()) == list(paper.state_dict())
    for relu_name, pool_name in pairs:
        assert isinstance(fast.get_submodule(relu_name), nn.Identity)
        assert isinstance(fast.get_submodule(pool_name)[1], nn.ReLU)
    x = torch.randn(4, 3, size, size)
    _assert_same(_step(fast, x), _step(paper, x))
    fast.eval(), paper.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), paper(x), rtol=1e-6, atol=1e-7)
    assert reorder_for_speed(fast) is fast and swappable_pairs(fast) == []  # nothing left


@pytest.mark.parametrize("case", ["resnet-imagenet", "googlenet"])
def test_reordered_view_shares_the_tensors_and_leaves_the_model_in_paper_order(case):
    name, kwargs, pairs, size = CASES[case]
    torch.manual_seed(0)
    paper = create_model(name, **kwargs).train()
    twin = copy.deepcopy(paper)  # separate tensors, stepped through the paper order
    view = reordered_view(paper)
    assert view is not paper and swappable_pairs(paper) == pairs and swappable_pairs(view) == []
    assert all(a is b for a, b in zip(view.parameters(), paper.parameters(), strict=True))
    assert all(a is b for a, b in zip(view.buffers(), paper.buffers(), strict=True))
    x = torch.randn(4, 3, size, size)
    through_view = _step(view, x)  # grads land on paper's parameters, statistics in its buffers
    assert all(p.grad is not None for p in paper.parameters())
    _assert_same(through_view, _step(twin, x))
    assert reordered_view(create_model("resnet20")).__class__.__name__ == "ResNet"


def test_a_model_with_nothing_to_swap_is_its_own_view():
    model = create_model("resnet20")
    assert reordered_view(model) is model


def test_undeclared_pairs_are_left_alone():
    assert swappable_pairs(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))) == []


def test_paper_order_forward():
    """The reference forward is the paper's: the stem's ReLU runs before its max-pool."""
    model = create_model("resnet18").eval()
    order = []
    for name in ("bn1", "relu", "maxpool"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: order.append(name))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert order == ["bn1", "relu", "maxpool"]
