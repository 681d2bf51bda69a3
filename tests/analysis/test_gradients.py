"""Gradient flow and block Jacobians (cnnarch.analysis.gradients)."""

import pytest
import torch

from cnnarch.analysis.gradients import (
    activation_gradients,
    block_jacobians,
    calibrate_bn,
    jacobian_svals,
    lower_layer_gradients,
    top_singular_value,
)
from cnnarch.models import create_model


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)


def test_profile_has_stem_and_every_block(batch):
    x, y = batch
    net = create_model("resnet20", in_chans=1)
    p = activation_gradients(net, x, y)
    assert p.names[0] == "stem" and len(p.names) == 1 + len(net.blocks())
    assert all(n > 0 for n in p.norms)
    assert p.stem_over_head == pytest.approx(p.norms[0] / p.norms[-1])
    assert net.training  # the caller's model is untouched (deep copy)
    assert all(q.grad is None for q in net.parameters())


def test_plain_without_norm_vanishes_residual_does_not(batch):
    x, y = batch
    torch.manual_seed(0)
    plain = activation_gradients(create_model("plain32", in_chans=1, norm="none"), x, y)
    torch.manual_seed(0)
    res = activation_gradients(create_model("resnet32", in_chans=1, norm="none"), x, y)
    assert plain.stem_over_head < 0.1
    assert res.stem_over_head >= 1.0


def test_identity_initialised_block_has_unit_singular_values(batch):
    x, _ = batch
    net = create_model("resnet20", in_chans=1, zero_init_residual=True)
    jac = block_jacobians(net, x, crop=4, max_blocks=2, calibrate=True)
    assert len(jac) == 2
    for j in jac:
        assert j.with_shortcut == pytest.approx((1.0, 1.0, 1.0), abs=1e-6)  # I + 0
        assert j.without_shortcut[2] == pytest.approx(0.0, abs=1e-6)  # dF/dx = 0


def test_exact_svals_of_linear_map_and_power_iteration_agree():
    torch.manual_seed(0)
    a = torch.randn(12, 12)
    fn = lambda v: (a @ v.reshape(-1)).reshape(1, 3, 2, 2)  # noqa: E731
    x = torch.randn(3, 2, 2)
    s = jacobian_svals(fn, x)
    ref = torch.linalg.svdvals(a.double())
    assert torch.allclose(s, ref, atol=1e-5)
    top = top_singular_value(lambda v: a @ v.reshape(-1), x.reshape(-1), iters=200)
    assert top == pytest.approx(float(ref[0]), rel=1e-3)


def test_calibrate_bn_sets_statistics_from_data(batch):
    x, _ = batch
    net = create_model("resnet20", in_chans=1)
    cal = calibrate_bn(net, x * 3 + 1)
    assert not cal.training
    assert not torch.allclose(cal.bn1.running_var, torch.ones_like(cal.bn1.running_var))
    assert net.bn1.running_var.mean() == pytest.approx(1.0)


def test_aux_heads_add_gradient_to_lower_layers():
    torch.manual_seed(0)
    net = create_model("googlenet_small", in_chans=1, num_classes=4, norm="none")
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 4, (4,))
    g = lower_layer_gradients(net, x, y, layers=("conv1", "inception3a"))
    assert g.layers == ("conv1", "inception3a")
    assert all(m >= 0 and a >= 0 for m, a in zip(g.main_only, g.with_aux, strict=True))
    zero = lower_layer_gradients(net, x, y, aux_weight=0.0, layers=("conv1",))
    assert zero.ratios[0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        lower_layer_gradients(create_model("googlenet_small", in_chans=1, aux_logits=False), x, y)
