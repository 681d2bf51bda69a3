"""Branch ablation, lesion study and the identity-mapping Jacobian gap, on small real models."""

import pytest
import torch

from cnnarch.analysis.ablation import BRANCHES, branch_ablation, branch_responses
from cnnarch.analysis.gradients import activation_gradients, calibrate_bn
from cnnarch.analysis.identity_mappings import (
    block_jacobian_gaps,
    head_to_stem_factor,
    jacobian_gap,
)
from cnnarch.analysis.lesions import lesion_study, lesioned, removable_blocks
from cnnarch.errors import UserError
from cnnarch.models import create_model


def _batch(n=16, size=8, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_preact_block_jacobian_is_exactly_identity_plus_residual():
    x, _ = _batch()
    torch.manual_seed(0)
    pre = calibrate_bn(create_model("preact_resnet20", in_chans=1), x)
    orig = calibrate_bn(create_model("resnet20", in_chans=1), x)
    scaled = calibrate_bn(create_model("preact_resnet20", in_chans=1, identity_shortcut="scale"), x)
    assert max(block_jacobian_gaps(pre, x[:2], max_blocks=2, probes=2)) < 1e-5
    assert min(block_jacobian_gaps(orig, x[:2], max_blocks=2, probes=2)) > 0.05  # the ReLU after the addition
    assert min(block_jacobian_gaps(scaled, x[:2], max_blocks=2, probes=2)) > 0.05  # J = 0.5 I + dF/dx


def test_jacobian_gap_needs_a_residual():
    with pytest.raises(UserError, match="residual"):
        jacobian_gap(torch.nn.ReLU(), torch.randn(1, 2, 2, 2))


def test_wrong_models_are_user_errors():
    with pytest.raises(UserError, match="inception_modules"):
        branch_ablation(torch.nn.ReLU(), torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(UserError, match="blocks"):
        lesioned(torch.nn.ReLU(), [0])


def test_head_to_stem_factor_matches_the_block_gradient_profile():
    x, y = _batch()
    torch.manual_seed(0)
    net = create_model("resnet20", in_chans=1)
    ours = head_to_stem_factor(net, x, y)
    ref = activation_gradients(net, x, y).stem_over_head
    assert abs(ours - ref) <= 1e-5 * ref


def test_lesion_replaces_a_block_by_the_identity():
    x, y = _batch()
    torch.manual_seed(0)
    net = calibrate_bn(create_model("resnet20", in_chans=1), x)
    assert removable_blocks(net, x) == [0, 1, 2, 4, 5, 7, 8]  # two downsampling blocks kept
    cut = lesioned(net, [1])
    with torch.no_grad():  # by hand: the stem, then every block but block 1, then the head
        h = net.relu(net.bn1(net.conv1(x)))
        for i, b in enumerate(net.blocks()):
            h = h if i == 1 else b(h)
        want = net.forward_head(h)
        assert torch.allclose(cut(x), want, atol=1e-6)
        assert not torch.allclose(net(x), want, atol=1e-4)
    res = lesion_study(net, x, y, max_removed=2, subsets=2)
    assert set(res.single) == set(res.removable) and res.by_count[0] == res.base_error
    assert sorted(res.by_count) == [0, 1, 2]


@pytest.mark.slow  # 37 googlenet_small forward passes
def test_branch_ablation_of_a_silent_branch_costs_nothing():
    x, y = _batch(n=8)
    torch.manual_seed(0)
    net = create_model("googlenet_small", in_chans=1).eval()
    bn = net.inception5b.branch1.bn  # BN gamma = beta = 0: the 1x1 branch of 5b outputs relu(0) = 0
    torch.nn.init.zeros_(bn.weight)
    torch.nn.init.zeros_(bn.bias)
    abl = branch_ablation(net, x, y)
    assert list(abl.drop) == list(net.inception_modules()) and list(abl.drop["3a"]) == list(BRANCHES)
    assert abl.drop["5b"]["1x1"] == 0.0
    stats = branch_responses(net, x)
    assert stats["5b"]["1x1"]["zero_fraction"] == 1.0
    assert 0.0 < stats["3a"]["3x3"]["zero_fraction"] < 1.0 and stats["3a"]["1x1"]["channels"] == 64


def test_an_ablated_pass_started_at_its_module_is_the_full_pass():
    """branch_ablation runs each ablated pass from its module on, fed the input an intact pass
    stored: that is the full forward exactly, with a branch zeroed or not."""
    from cnnarch.analysis.ablation import _intact_pass, _starting_at, _zero_output

    x, _ = _batch(n=4)
    torch.manual_seed(0)
    net = create_model("googlenet_small", in_chans=1).eval()
    modules = net.inception_modules()
    with torch.no_grad():
        intact, inputs = _intact_pass(net, modules, x)
        assert list(inputs) == list(modules)
        for key in ("3a", "4a", "5b"):
            handle = modules[key].branch2.register_forward_hook(_zero_output)
            try:
                full = net(x)
                with _starting_at(net, key, inputs[key]):
                    started = net(torch.zeros_like(x))  # the prefix is skipped: x is ignored
            finally:
                handle.remove()
            assert torch.equal(started, full) and not torch.equal(full, intact)
        assert torch.equal(net(x), intact)  # the trunk is put back
