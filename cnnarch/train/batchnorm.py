"""Batch normalisation in training mode, written so that ``torch.compile`` makes it fast on CPUs.

The batch-normalising transform (Ioffe & Szegedy 2015, Algorithm 1) needs the mean and the
biased variance of each channel over the batch. Inductor's CPU code for the built-in
``batch_norm`` computes them with a Welford reduction that runs several times slower than
eager, while the same statistics written as two plain mean reductions compile to faster
code than eager (measured in docs/benchmarks.md). :class:`TwoPassBatchNorm2d` is that rewrite: the same
transform, running statistics and state_dict as ``nn.BatchNorm2d``; only its training forward
is spelled differently. Eager PyTorch runs it slower than the built-in, so the training loop
uses it only under ``torch.compile`` on a CPU (:func:`batchnorm_for_compile`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TwoPassBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training forward is mean, then the mean squared deviation.

    Evaluation mode, and any configuration this rewrite does not cover (no running
    statistics, no affine parameters, a cumulative average, one value per channel) defer to
    the built-in.
    """

    def _covered(self, x: torch.Tensor) -> bool:
        return (self.training and self.track_running_stats and self.affine
                and self.momentum is not None and x.numel() > x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._covered(x):
            return super().forward(x)
        # x: (N, C, H, W) -> statistics over N, H, W in fp32 (as the built-in does for bf16 input)
        xf = x.float()
        mean = xf.mean((0, 2, 3))  # mu_B
        centred = xf - mean[None, :, None, None]
        var = centred.square().mean((0, 2, 3))  # sigma_B^2, biased (Algorithm 1)
        n = x.numel() // x.shape[1]
        with torch.no_grad():  # running statistics: unbiased variance, as nn.BatchNorm2d keeps
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (n / (n - 1)), self.momentum)
            self.num_batches_tracked.add_(1)
        scale = torch.rsqrt(var + self.eps) * self.weight  # gamma / sqrt(sigma_B^2 + eps)
        y = centred * scale[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def two_pass_batchnorm(model: nn.Module) -> Callable[[], None]:
    """Make every ``nn.BatchNorm2d`` in ``model`` a :class:`TwoPassBatchNorm2d`, in place (the
    parameters and buffers stay the same objects, so optimizers and checkpoints are
    unaffected). Returns a function that turns them back."""
    swapped = [m for m in model.modules() if type(m) is nn.BatchNorm2d]
    for m in swapped:
        m.__class__ = TwoPassBatchNorm2d

    def restore() -> None:
        for m in swapped:
            m.__class__ = nn.BatchNorm2d

    return restore


def batchnorm_for_compile(model: nn.Module, device: torch.device) -> Callable[[], None]:
    """The batch norm to compile ``model`` with on ``device``: the two-pass one on a CPU (the
    only place it was measured faster), the built-in elsewhere. Returns the undo function."""
    if device.type == "cpu":
        return two_pass_batchnorm(model)
    return lambda: None
