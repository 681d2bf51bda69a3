"""Is dy/dx = I + dF/dx exact? (He, Zhang, Ren and Sun 2016, "Identity Mappings in Deep
Residual Networks", Eq. 3-5.)

For a block y = x + F(x) with nothing after the addition (the pre-activation block), the
Jacobian is exactly I + dF/dx (Eq. 4 differentiated: dL/dx = dL/dy (1 + dF/dx), Eq. 5).
The original block y = relu(x + F(x)) has J = D (I + dF/dx), D the ReLU's 0/1 mask, so
J - I differs from dF/dx wherever the ReLU cuts.

``jacobian_gap`` measures ||(J - I) v - (dF/dx) v|| / ||(dF/dx) v|| for random directions v
with forward-mode products (``torch.func.jvp``), on the block's real input, in eval mode
(BN with running statistics, so the block is a per-image function). The block must expose
``residual(x)`` (F). 0 (to rounding) means the identity shortcut is exact.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError


def jacobian_gap(block: nn.Module, x: torch.Tensor, *, probes: int = 4, seed: int = 0) -> float:
    """Mean over ``probes`` random directions of ||(J - I) v - J_F v|| / ||J_F v||, where J is
    the Jacobian of ``block`` and J_F that of ``block.residual`` at ``x`` (N x C x H x W)."""
    from torch.func import jvp

    if not hasattr(block, "residual"):
        raise UserError(f"{type(block).__name__} has no residual(x)")
    was = block.training
    block.eval()
    g = torch.Generator().manual_seed(seed)
    x = x.detach().float()
    gaps = []
    try:
        for _ in range(probes):
            v = torch.randn(x.shape, generator=g)
            _, jv = jvp(block, (x,), (v,))  # J v, shape of the block's output
            _, jfv = jvp(block.residual, (x,), (v,))  # (dF/dx) v
            denom = float(jfv.detach().norm())
            gaps.append(float((jv - v - jfv).detach().norm()) / denom if denom > 0 else float("inf"))
    finally:
        block.train(was)
    return sum(gaps) / len(gaps)


def block_jacobian_gaps(model: nn.Module, images: torch.Tensor, *, max_blocks: int = 6,
                        probes: int = 4, seed: int = 0) -> list[float]:
    """``jacobian_gap`` of the first ``max_blocks`` identity-shaped blocks of ``model`` (their
    input and output have the same shape), each at its real input for ``images``."""
    from .gradients import block_inputs

    inputs = block_inputs(model, images)
    gaps = []
    for block, x in zip(model.blocks(), inputs, strict=True):
        if len(gaps) >= max_blocks:
            break
        with torch.no_grad():
            was = block.training
            block.eval()
            same = block(x[:1]).shape == x[:1].shape
            block.train(was)
        if same:
            gaps.append(jacobian_gap(block, x, probes=probes, seed=seed))
    return gaps


def head_to_stem_factor(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                        train_mode: bool = True) -> float:
    """||dL/d x_0|| / ||dL/d x_L||: the gradient norm at the first block's input (the stem's
    output) over that at the last block's output, L the mean cross-entropy on one batch.
    1 = the gradient reaches the stem undiminished; << 1 it vanished, >> 1 it grew. Works for
    any model with ``blocks()`` (original, plain and pre-activation ResNets). The model is
    deep-copied; ``train_mode`` uses BN batch statistics, as in training."""
    import copy

    import torch.nn.functional as F

    work = copy.deepcopy(model).float()
    work.train(train_mode)
    blocks = work.blocks()
    kept: dict[str, torch.Tensor] = {}

    def keep_input(_m, args):
        x = args[0]
        if not x.requires_grad:  # the stem output is a leaf only when nothing precedes it
            x = x.detach().requires_grad_(True)
        x.retain_grad()
        kept["stem"] = x
        return (x,)

    def keep_output(_m, _args, out):
        out.retain_grad()
        kept["head"] = out

    h1 = blocks[0].register_forward_pre_hook(keep_input)
    h2 = blocks[-1].register_forward_hook(keep_output)
    try:
        F.cross_entropy(work(images.float()), labels).backward()
    finally:
        h1.remove()
        h2.remove()
    head = float(kept["head"].grad.norm())
    return float(kept["stem"].grad.norm()) / head if head > 0 else float("inf")
