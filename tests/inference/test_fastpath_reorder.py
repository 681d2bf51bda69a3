"""The fast path runs the models' declared speed reorderings (pool before ReLU) and still
computes the original's function; the original keeps the papers' order."""

import torch
from torch import nn

from cnnarch.inference import optimize
from cnnarch.inference.bench import noise_bn_statistics
from cnnarch.models import create_model
from cnnarch.models.reorder import swappable_pairs


def test_fast_path_takes_the_stem_pool_before_the_relu():
    torch.manual_seed(0)
    model = create_model("resnet18")
    noise_bn_statistics(model, torch.randn(4, 3, 64, 64))
    model.eval()
    assert swappable_pairs(model) == [("relu", "maxpool")]
    x = torch.randn(2, 3, 64, 64)
    fast = optimize(model, x, precision="fp32", channels_last=False)
    assert isinstance(fast.model.relu, nn.Identity)
    assert isinstance(fast.model.maxpool, nn.Sequential)
    assert swappable_pairs(fast.model) == []
    assert fast.folded == 20 and fast.check.passed  # every BN still folded; same logits
    assert isinstance(model.relu, nn.ReLU) and isinstance(model.maxpool, nn.MaxPool2d)
