"""ResNet: exact parameter counts (docs/reference.md), shortcut options, plain twins, shapes."""

import pytest
import torch

from cnnarch.models import create_model
from cnnarch.models.layers import ZeroPadShortcut


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# torchvision's exact counts (option B, v1.5 and v1 have the same parameters).
IMAGENET_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}

# Sec. 4.2, option A, BN affine, fc 64 -> 10.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}


@pytest.mark.parametrize("name,count", IMAGENET_PARAMS.items())
def test_imagenet_param_counts(name, count):
    assert n_params(create_model(name)) == count
    assert n_params(create_model(name, stride_at="1x1")) == count


@pytest.mark.parametrize("depth,count", CIFAR_PARAMS.items())
def test_cifar_param_counts(depth, count):
    assert n_params(create_model(f"resnet{depth}")) == count


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twin_has_exactly_the_resnets_parameters(depth):
    # Option A shortcuts have no parameters, so the twins differ only by the addition.
    plain, res = create_model(f"plain{depth}"), create_model(f"resnet{depth}")
    assert n_params(plain) == n_params(res) == CIFAR_PARAMS[depth]
    assert [k for k in plain.state_dict()] == [k for k in res.state_dict()]


def test_plain_twin_differs_only_by_the_shortcut():
    torch.manual_seed(0)
    res = create_model("resnet20").eval()
    plain = create_model("plain20").eval()
    plain.load_state_dict(res.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(res(x), plain(x))
    for block in res.blocks():
        block.has_shortcut = False  # drop the "+ x" and the nets agree exactly
    assert torch.equal(res(x), plain(x))


def test_shortcut_options_parameter_order():
    # A (no parameters) < B (projections where the shape changes) < C (projections everywhere).
    a, b, c = (n_params(create_model("resnet34", shortcut=s)) for s in "ABC")
    assert a < b < c
    assert b == IMAGENET_PARAMS["resnet34"]
    res = create_model("resnet20", shortcut="A")
    pads = [m for m in res.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(pads) == 2  # first block of stages 2 and 3


def test_option_a_shortcut_zero_pads_and_subsamples():
    sc = ZeroPadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_residual_block_is_f_of_x_plus_x():
    torch.manual_seed(0)
    block = create_model("resnet20").eval().blocks()[1]  # an identity-shortcut block
    x = torch.randn(2, 16, 8, 8)
    expected = torch.relu(block.residual(x) + x)  # Eq. (1)
    assert torch.allclose(block(x), expected)


def test_zero_init_residual_makes_every_block_start_as_identity_map():
    model = create_model("resnet20", zero_init_residual=True).eval()
    x = torch.relu(torch.randn(2, 16, 8, 8))
    block = model.blocks()[0]
    assert torch.count_nonzero(block.residual(x)) == 0
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("stride_at,expected", [("3x3", (1, 2)), ("1x1", (2, 1))])
def test_bottleneck_stride_placement(stride_at, expected):
    block = create_model("resnet50", stride_at=stride_at).layer2[0]
    assert (block.conv1.stride[0], block.conv2.stride[0]) == expected


def test_norm_none_removes_batchnorm():
    model = create_model("plain20", norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_forward_features_and_head():
    model = create_model("resnet50", num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (1, 2048, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 2048)
    assert torch.allclose(model.forward_head(feats), model(x))


def test_in_chans_and_digit_sized_inputs():
    model = create_model("resnet56", in_chans=1).eval()
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_cifar_depth_must_be_6n_plus_2():
    from cnnarch.models.resnet import cifar_resnet

    assert len(cifar_resnet(26).blocks()) == 12
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(25)
