"""GoogLeNet: Table 1 as data, the Inception module, aux heads, variants and sizes."""

import pytest
import torch

from cnnarch.models import (
    TABLE1,
    GoogLeNetOutputs,
    Inception,
    InceptionRow,
    create_model,
    googlenet_loss,
)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_param_counts():
    assert n_params(create_model("googlenet_tv", aux_logits=False)) == 6_624_904
    assert n_params(create_model("googlenet_tv", aux_logits=True)) == 13_004_888
    assert n_params(create_model("googlenet", aux_logits=False)) == 6_998_552


def test_table1_rows_give_the_papers_output_depths():
    depths = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
              "5a": 832, "5b": 1024}
    for key, row in TABLE1.items():
        assert row.n1x1 + row.n3x3 + row.n5x5 + row.pool_proj == depths[key]
    model = create_model("googlenet")
    assert {k: m.out_channels for k, m in model.inception_modules().items()} == depths


def test_module_concatenates_four_branches_depthwise():
    module = Inception(192, TABLE1["3a"]).eval()
    x = torch.randn(2, 192, 28, 28)
    y = module(x)
    assert y.shape == (2, 256, 28, 28)
    parts = [module.branch1(x), module.branch2(x), module.branch3(x), module.branch4(x)]
    assert [p.shape[1] for p in parts] == [64, 128, 32, 32]
    assert torch.equal(y, torch.cat(parts, 1))
    assert module.branch3[1].conv.kernel_size == (5, 5)  # the paper's true 5x5


def test_lecture_naive_and_bottleneck_modules():
    naive = Inception(256, InceptionRow(128, 0, 192, 0, 96, 0), mode="naive")
    bottleneck = Inception(256, InceptionRow(128, 64, 192, 64, 96, 64))
    x = torch.randn(1, 256, 28, 28)
    assert naive(x).shape == (1, 672, 28, 28)  # the pool branch keeps all 256 channels
    assert bottleneck(x).shape == (1, 480, 28, 28)


def test_naive_network_depth_follows_the_previous_module():
    model = create_model("googlenet_small", inception="naive", aux_logits=True)
    depth = 192
    for key, module in model.inception_modules().items():
        assert module.branch1.conv.in_channels == depth
        row = TABLE1[key]
        assert module.out_channels == row.n1x1 + row.n3x3 + row.n5x5 + depth
        depth = module.out_channels
    assert model.aux1.conv.conv.in_channels == model.inception4a.out_channels
    assert model.fc.in_features == depth
    assert model.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_tv", "googlenet_small"])
def test_aux_heads_in_training_only(name):
    model = create_model(name, num_classes=5)
    size = {"googlenet": 224, "googlenet_tv": 96, "googlenet_small": 16}[name]
    x = torch.randn(2 if name != "googlenet" else 1, 3, size, size)
    n = x.shape[0]
    model.train()
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [(n, 5)] * 3
    model.eval()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (n, 5)


def test_no_aux_heads_returns_logits_in_training():
    model = create_model("googlenet_small", aux_logits=False).train()
    assert isinstance(model(torch.randn(2, 3, 16, 16)), torch.Tensor)
    assert model.aux1 is None and model.aux2 is None


def test_combined_loss_weights_aux_by_0_3():
    target = torch.tensor([0, 1])
    logits, a1, a2 = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    ce = torch.nn.functional.cross_entropy
    loss = googlenet_loss(GoogLeNetOutputs(logits, a1, a2), target)
    assert torch.allclose(loss, ce(logits, target) + 0.3 * (ce(a1, target) + ce(a2, target)))
    assert torch.allclose(googlenet_loss(logits, target), ce(logits, target))


def test_paper_variant_uses_lrn_and_biases_and_tv_uses_bn():
    paper, tv = create_model("googlenet"), create_model("googlenet_tv")
    assert isinstance(paper.lrn1, torch.nn.LocalResponseNorm)
    assert paper.conv1.conv.bias is not None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in paper.modules())
    assert tv.conv1.conv.bias is None and tv.conv1.bn.eps == 1e-3
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's "5x5"
    assert paper.dropout.p == 0.4 and tv.dropout.p == 0.2
    bn_paper = create_model("googlenet", norm="bn")
    assert not isinstance(bn_paper.lrn1, torch.nn.LocalResponseNorm)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_tv", "googlenet_small"])
def test_min_input_size_is_tight(name):
    """The stated minimum runs; one pixel less fails inside torch (so the check is needed)."""
    model = create_model(name).eval()
    s = model.min_input_size
    assert model(torch.randn(1, 3, s, s)).shape == (1, 1000 if name != "googlenet_small" else 10)
    if s > 1:
        with pytest.raises(ValueError, match="at least"):
            model(torch.randn(1, 3, s - 1, s - 1))
        model.min_input_size = 1  # without our check, torch itself fails
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 3, s - 1, s - 1))


@pytest.mark.parametrize("mode", ["bottleneck", "naive"])
@pytest.mark.parametrize("size", [8, 32])
def test_small_variant_on_8x8_and_32x32(mode, size):
    model = create_model("googlenet_small", in_chans=1, inception=mode).eval()
    assert model(torch.randn(2, 1, size, size)).shape == (2, 10)
    feats = model.forward_features(torch.randn(2, 1, size, size))
    assert feats.shape == (2, model.num_features, size // 4, size // 4)


def test_linear_reductions_drop_only_the_reduction_relus():
    """inception="linear": the bottleneck's parameters, with the 1x1 reductions left linear."""
    torch.manual_seed(0)
    ref = Inception(192, TABLE1["3a"]).eval()
    module = Inception(192, TABLE1["3a"], mode="linear").eval()
    assert list(module.state_dict()) == list(ref.state_dict())
    module.load_state_dict(ref.state_dict())
    h = torch.randn(2, 192, 8, 8)
    assert not torch.equal(module(h), ref(h))
    for branch in ("branch2", "branch3"):
        reduced = getattr(module, branch)[0](h)
        assert (reduced < 0).any()  # no ReLU after the reduction
        assert torch.equal(torch.relu(reduced), getattr(ref, branch)[0](h))
        assert torch.equal(getattr(module, branch)[1](reduced), getattr(ref, branch)[1](reduced))
    for branch in ("branch1", "branch4"):  # the 1x1 branch and the pool projection keep theirs
        assert torch.equal(getattr(module, branch)(h), getattr(ref, branch)(h))
    out = module(h)
    assert out.shape == (2, 256, 8, 8) and (out >= 0).all()
    with torch.device("meta"):
        net = create_model("googlenet_small", inception="linear")
        paper = create_model("googlenet_small")
    assert n_params(net) == n_params(paper)
    assert all(m.mode == "linear" for m in net.inception_modules().values())
