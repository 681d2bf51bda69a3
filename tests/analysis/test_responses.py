"""Layer responses and residual ratios (cnnarch.analysis.responses)."""

import pytest
import torch

from cnnarch.analysis.responses import residual_ratios, response_stds
from cnnarch.models import create_model


def test_response_stds_cover_every_3x3_bn_in_order():
    net = create_model("resnet20", in_chans=1).eval()
    x = torch.randn(16, 1, 8, 8)
    p = response_stds(net, x)
    assert p.layers[0] == "stem" and len(p.layers) == 1 + 2 * len(net.blocks())  # 19 = 6n + 1
    assert p.layers[1:3] == ("block1.bn1", "block1.bn2")
    assert p.sorted_desc == tuple(sorted(p.stds, reverse=True))
    assert all(s >= 0 for s in p.stds)


def test_response_std_is_taken_before_the_inplace_relu():
    # bn1 is followed by an in-place ReLU; a pre-ReLU std of a BN output with beta = 0 and
    # batch statistics is ~gamma = 1, a post-ReLU one would be ~0.58.
    net = create_model("plain20", in_chans=1)
    x = torch.randn(64, 1, 8, 8)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = m.running_var = None
    p = response_stds(net, x)
    assert p.stds[1] == pytest.approx(1.0, abs=0.05)


def test_residual_ratio_zero_for_identity_blocks_and_input_norm_for_plain():
    net = create_model("resnet20", in_chans=1, zero_init_residual=True)
    r = residual_ratios(net, torch.randn(8, 1, 8, 8))
    assert len(r.ratios) == 9 and max(r.ratios) == 0.0
    assert net.training  # mode restored
    torch.manual_seed(0)
    res = create_model("resnet20", in_chans=1).eval()
    plain = create_model("plain20", in_chans=1).eval()
    plain.load_state_dict(res.state_dict())
    x = torch.randn(4, 1, 8, 8)
    # same weights, same first block input: identity shortcut -> ||F(x)|| / ||x|| in both
    assert residual_ratios(plain, x).ratios[0] == pytest.approx(residual_ratios(res, x).ratios[0])
