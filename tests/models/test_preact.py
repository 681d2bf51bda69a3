"""Pre-activation ResNet (He et al. 2016): exact parameter counts, x_{l+1} = x_l + F(x_l)
exactly in identity units, BN-ReLU-conv order, the shortcut ablation of Table 1."""

import pytest
import torch
from torch import nn

from cnnarch.models import create_model
from cnnarch.models.preact import PreActBottleneck, PreActResNet


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# Ours, computed (basic units: option A; bottleneck units: option B projections).
PREACT_PARAMS = {20: 269_722, 56: 853_018, 110: 1_727_962, 164: 1_703_258, 1001: 10_327_706}


def _meta(name, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize(("depth", "count"), PREACT_PARAMS.items())
def test_param_counts(depth, count):
    model = _meta(f"preact_resnet{depth}")
    assert n_params(model) == count
    assert len(model.blocks()) == (depth - 2) // (3 if depth in (164, 1001) else 2)


def test_param_counts_beside_the_paper():
    # arXiv:1603.05027 Table 3/4: ResNet-164 1.7M, ResNet-1001 10.2M. 164 matches with or
    # without BN's parameters; 1001's 10.2M is its conv + fc weights (10,178,490): with the
    # 149,216 BN gammas and betas it is 10.33M.
    assert round(PREACT_PARAMS[164] / 1e6, 1) == 1.7
    m = _meta("preact_resnet1001")
    bn = sum(p.numel() for b in m.modules() if isinstance(b, nn.BatchNorm2d) for p in b.parameters())
    assert bn == 149_216 and PREACT_PARAMS[1001] - bn == 10_178_490
    assert round((PREACT_PARAMS[1001] - bn) / 1e6, 1) == 10.2


def _randomise_bn(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.3)
            nn.init.normal_(m.bias, 0.0, 0.3)
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _inputs_of_units(model, x):
    """The input of every unit on a forward pass of ``x``."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append((m, a[0].clone())))
             for b in model.blocks()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("model", [
    "preact_resnet20",
    PreActResNet(PreActBottleneck, 2, shortcut="B"),  # preact_resnet164's units, n = 2
], ids=["basic", "bottleneck"])
def test_identity_units_are_exactly_x_plus_residual(model):
    if isinstance(model, str):
        model = create_model(model)
    model = _randomise_bn(model)
    units = _inputs_of_units(model, torch.randn(2, 3, 16, 16))
    identity = [(b, x) for b, x in units if not b.shared_preact]
    # the shape changes: stages 2 and 3, and the bottleneck's first unit (16 -> 64 channels)
    assert len(units) - len(identity) == (3 if isinstance(units[0][0], PreActBottleneck) else 2)
    with torch.no_grad():
        for block, x in identity:
            y = block(x)
            assert torch.equal(y, x + block.residual(x))  # Eq. (3) with f = identity, exact
        negative = any((block(x) < 0).any() for block, x in identity)
    assert negative  # nothing (no ReLU) after the addition


def test_original_units_are_not_x_plus_residual():
    # the negative control: He et al. 2015 puts a ReLU after the addition
    model = _randomise_bn(create_model("resnet20"))
    block, x = model.blocks()[1], torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(block(x), x + block.residual(x))


def test_units_read_bn_relu_conv():
    model = _randomise_bn(create_model("preact_resnet20"))
    block = model.blocks()[1]
    x = torch.randn(2, 16, 8, 8)
    bn1, _ = block.preact
    expected = block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(bn1(x))))))
    with torch.no_grad():
        assert torch.allclose(block.residual(x), expected)
    assert isinstance(model.blocks()[0].preact, nn.Identity)  # activation right after conv1
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 16, 16))
    assert feats.shape == (2, 64, 4, 4) and (feats >= 0).all()  # the final BN-ReLU


def test_shape_changing_units_project_the_preactivated_input():
    model = _randomise_bn(create_model("preact_resnet20", shortcut="B"))
    block = model.layer2[0]
    assert block.shared_preact and isinstance(block.downsample, nn.Conv2d)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (2, 32, 4, 4)
        assert torch.equal(y, block.shortcut(x) + block.residual(x))
        assert torch.equal(block.shortcut(x), block.downsample(block.preact(x)))


def test_shortcut_ablation():
    base = _randomise_bn(create_model("preact_resnet20"))
    scaled = create_model("preact_resnet20", identity_shortcut="scale")
    conv = create_model("preact_resnet20", identity_shortcut="conv")
    scaled.load_state_dict(base.state_dict())
    scaled.eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        unit = scaled.blocks()[1]
        assert torch.equal(unit(x), 0.5 * x + unit.residual(x))  # Table 1, constant scaling
    identity_units = [b for b in conv.blocks() if not b.shared_preact]
    assert all(isinstance(b.downsample, nn.Conv2d) and b.downsample.kernel_size == (1, 1)
               for b in identity_units)
    extra = sum(b.downsample.weight.numel() for b in identity_units)
    assert n_params(conv) == n_params(base) + extra
    assert conv.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"identity_shortcut": "gate"}, "identity_shortcut"), ({"shortcut": "C"}, "shortcut"),
])
def test_bad_options(kwargs, word):
    with pytest.raises(ValueError, match=word):
        create_model("preact_resnet56", **kwargs)
