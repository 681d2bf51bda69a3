"""The speed transform (cnnarch.inference.reorder): pools before ReLUs where the models
declare they commute; the same function and the same gradients as the paper-order model."""

import copy

import pytest
import torch
from torch import nn

from cnnarch.inference.reorder import reorder_for_speed, swappable_pairs
from cnnarch.models import create_model


def _outputs_and_grads(model, x):
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout mask
    out = model(x)
    out.square().mean().backward()
    return out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize(("name", "kwargs", "pairs"), [
    ("resnet18", {}, [("relu", "maxpool")]),
    ("googlenet_tv", {"aux_logits": False}, [("conv1.relu", "maxpool1"), ("conv3.relu", "maxpool2")]),
])
def test_same_function_and_gradients(name, kwargs, pairs):
    torch.manual_seed(0)
    paper = create_model(name, **kwargs).train()
    fast = reorder_for_speed(copy.deepcopy(paper))
    assert swappable_pairs(paper) == pairs and swappable_pairs(fast) == []
    assert list(fast.state_dict()) == list(paper.state_dict())
    for relu_name, pool_name in pairs:
        assert isinstance(fast.get_submodule(relu_name), nn.Identity)
        assert isinstance(fast.get_submodule(pool_name)[1], nn.ReLU)
    x = torch.randn(2, 3, 64, 64)
    out_p, grads_p = _outputs_and_grads(paper, x)
    out_f, grads_f = _outputs_and_grads(fast, x)
    torch.testing.assert_close(out_f, out_p, rtol=1e-6, atol=1e-7)
    for key, grad in grads_p.items():
        torch.testing.assert_close(grads_f[key], grad, rtol=1e-5, atol=1e-7, msg=key)
    fast.eval(), paper.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), paper(x), rtol=1e-6, atol=1e-7)
    assert reorder_for_speed(fast) is fast and swappable_pairs(fast) == []  # nothing left


def test_pairs_follow_the_layout():
    with torch.device("meta"):
        lrn = create_model("googlenet")  # the paper's LRN sits between conv3's ReLU and the pool
        bn = create_model("googlenet", norm="bn")
        small = create_model("googlenet_small")  # no stem pools
        cifar = create_model("resnet20")
        preact = create_model("preact_resnet20")
    assert swappable_pairs(lrn) == [("conv1.relu", "maxpool1")]
    assert swappable_pairs(bn) == [("conv1.relu", "maxpool1"), ("conv3.relu", "maxpool2")]
    assert swappable_pairs(small) == swappable_pairs(cifar) == swappable_pairs(preact) == []
    assert swappable_pairs(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))) == []  # undeclared


def test_paper_order_forward():
    """The reference forward is the paper's: the stem's ReLU runs before its max-pool."""
    model = create_model("resnet18").eval()
    order = []
    for name in ("bn1", "relu", "maxpool"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: order.append(name))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert order == ["bn1", "relu", "maxpool"]
