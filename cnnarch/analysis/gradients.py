"""Gradient flow (lecture claim R5, and the gradient part of G5).

Three measurements, each on real images:

- ``activation_gradients``: the norm of dL/d(activation) at the stem and at every block's
  output of a ResNet (or plain twin), from the head back to the stem, on one batch. For
  y = F(x) + x, dL/dx = dL/dy (dF/dx + I) (Eq. 1 differentiated): the "+1" is the
  identity path the gradient can always take.
- ``block_jacobian``: the singular values of a single block's Jacobian dy/dx, exactly
  (``torch.func.jacrev`` + SVD) on the block's real input, centre-cropped to a few pixels so
  the matrix stays small. BN runs in eval mode (running statistics), which makes the block a
  per-image function; a model at initialisation gets its statistics calibrated on the data
  first (``calibrate_bn``). The residual map is x -> F(x) + x (before the final ReLU, the
  map the lecture's formula is about), the same block without its shortcut is x -> F(x).
  ``top_singular_value`` estimates the largest one by power iteration with JVP/VJP for
  inputs too big to build the matrix.
- ``lower_layer_gradients``: for GoogLeNet, the gradient that reaches the lower layers
  (conv1..3, inception 3a/3b/4a) from the main loss alone and from main + 0.3 x (aux1 +
  aux2), computed from the same forward pass (Sec. 5 of the GoogLeNet paper).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GradientProfile:
    """||dL/d a|| for each activation, stem first, head last; ``loss`` the batch loss."""

    model: str
    names: tuple[str, ...]
    norms: tuple[float, ...]
    loss: float

    @property
    def stem_over_head(self) -> float:
        """How much the gradient grew (> 1) or shrank (< 1) from the head to the stem."""
        return self.norms[0] / self.norms[-1] if self.norms[-1] > 0 else float("inf")

    @property
    def spread(self) -> float:
        """Largest over smallest norm along the depth (>= 1)."""
        lo = min(self.norms)
        return max(self.norms) / lo if lo > 0 else float("inf")

    def to_dict(self) -> dict:
        return dict(asdict(self), stem_over_head=self.stem_over_head, spread=self.spread)


def _blocks(model: nn.Module) -> list[nn.Module]:
    if not hasattr(model, "blocks"):
        raise ValueError(f"{type(model).__name__} has no .blocks(); use a ResNet or plain model")
    return model.blocks()


def activation_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                         train_mode: bool = True) -> GradientProfile:
    """Norm of dL/d(activation) at the stem output and at each block's output.

    The model is deep-copied (its weights, BN statistics and mode are untouched).
    ``train_mode`` uses batch statistics in BN, as during training. L is the mean
    cross-entropy over the batch.
    """
    work = copy.deepcopy(model).float()
    work.train(train_mode)
    named = [("stem", work.maxpool)] + [(f"block{i + 1}", b) for i, b in enumerate(_blocks(work))]
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            output.retain_grad()
            captured[name] = output
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in named]
    try:
        work.zero_grad(set_to_none=True)
        loss = F.cross_entropy(work(images.float()), labels)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    norms = tuple(float(captured[n].grad.norm()) for n, _ in named)
    loss = loss.detach()
    return GradientProfile(getattr(model, "registry_name", getattr(model, "name", "model")),
                           tuple(n for n, _ in named), norms, float(loss))


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Return a copy whose BN running statistics are the exact averages over ``images``
    (momentum None = cumulative average), in eval mode. For measuring a model at init."""
    work = copy.deepcopy(model).float()
    bns = [m for m in work.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    work.train()
    for i in range(0, len(images), batch_size):
        work(images[i:i + batch_size].float())
    return work.eval()


def block_inputs(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The input each block receives for ``images`` (eval mode, no gradient)."""
    inputs: list[torch.Tensor] = []
    handles = [b.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach().clone()))
               for b in _blocks(model)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images.float())
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return inputs


def _crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return x[..., top:top + size, left:left + size]


def jacobian_svals(fn, x: torch.Tensor) -> torch.Tensor:
    """All singular values (descending) of the Jacobian of ``fn`` at one input ``x``
    (shape C x H x W, no batch dimension), built exactly with reverse-mode autodiff."""
    from torch.func import jacrev

    def flat(v):
        return fn(v.view(1, *x.shape)).reshape(-1)

    jac = jacrev(flat)(x.reshape(-1).double() if x.dtype == torch.float64 else x.reshape(-1))
    return torch.linalg.svdvals(jac.detach().double())


def top_singular_value(fn, x: torch.Tensor, iters: int = 30, seed: int = 0) -> float:
    """Largest singular value of d fn/dx at ``x`` by power iteration on J^T J, with one JVP
    and one VJP per step (never builds the matrix)."""
    from torch.func import jvp, vjp

    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=g, dtype=x.dtype)
    v = v / v.norm()
    _, pullback = vjp(fn, x)
    sigma = 0.0
    for _ in range(iters):
        _, jv = jvp(fn, (x,), (v,))
        (jtjv,) = pullback(jv)
        sigma = float(jv.norm())
        v = jtjv / jtjv.norm().clamp_min(1e-30)
    return sigma


@dataclass(frozen=True)
class BlockJacobian:
    """Singular values of one block's Jacobian, with and without its shortcut."""

    block: str
    dim: int
    with_shortcut: tuple[float, float, float] | None  # (min, median, max) of I + dF/dx
    without_shortcut: tuple[float, float, float]  # (min, median, max) of dF/dx

    def to_dict(self) -> dict:
        return asdict(self)


def _summary(s: torch.Tensor) -> tuple[float, float, float]:
    return float(s.min()), float(s.median()), float(s.max())


def block_jacobians(model: nn.Module, images: torch.Tensor, *, crop: int = 4,
                    max_blocks: int | None = None, calibrate: bool = False) -> list[BlockJacobian]:
    """Jacobian singular values of each block whose shortcut is the identity (for the
    plain twin: each block whose input and output shapes match), on the first image.

    The block input is centre-cropped to ``crop`` x ``crop`` pixels: in eval mode a block is
    convolutions, fixed affine BN and ReLU, so the crop is a valid (smaller) input of the
    same function. ``calibrate=True`` first sets BN statistics from ``images`` (use it for a
    model at initialisation, whose running statistics are still 0 and 1).
    """
    work = calibrate_bn(model, images) if calibrate else copy.deepcopy(model).float().eval()
    xs = block_inputs(work, images[:1])
    out: list[BlockJacobian] = []
    for i, (block, x) in enumerate(zip(_blocks(work), xs, strict=True)):
        same_shape = block.conv1.stride == (1, 1) and block.conv1.in_channels == block.last_norm.num_features
        if not same_shape or getattr(block, "downsample", None) is not None:
            continue
        x0 = _crop(x[0], crop).contiguous()
        without = jacobian_svals(block.residual, x0)
        with_sc = None
        if block.has_shortcut:
            with_sc = _summary(jacobian_svals(lambda v, b=block: b.residual(v) + b.shortcut(v), x0))
        out.append(BlockJacobian(f"block{i + 1}", x0.numel(), with_sc, _summary(without)))
        if max_blocks is not None and len(out) >= max_blocks:
            break
    return out


# --- GoogLeNet: the gradient the aux heads add to the lower layers ------------------------------

LOWER_LAYERS = ("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a")


@dataclass(frozen=True)
class AuxGradient:
    """Per lower layer: ||grad|| of the main loss alone and of main + w (aux1 + aux2)."""

    layers: tuple[str, ...]
    main_only: tuple[float, ...]
    with_aux: tuple[float, ...]
    aux_weight: float

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(a / m if m > 0 else float("inf") for a, m in zip(self.with_aux, self.main_only, strict=True))

    def to_dict(self) -> dict:
        return dict(asdict(self), ratios=self.ratios)


def lower_layer_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                          aux_weight: float = 0.3, layers=LOWER_LAYERS, seed: int = 0) -> AuxGradient:
    """Gradient norm reaching each of ``layers``' weights from the main loss alone and from
    the combined training loss, from one forward pass (same dropout masks) of a GoogLeNet
    with aux heads, in training mode. The model is deep-copied."""
    work = copy.deepcopy(model).float().train()
    if getattr(work, "aux1", None) is None:
        raise ValueError("lower_layer_gradients needs a GoogLeNet built with aux_logits=True")
    torch.manual_seed(seed)
    out = work(images.float())
    main = F.cross_entropy(out.logits, labels)
    aux = aux_weight * (F.cross_entropy(out.aux1, labels) + F.cross_entropy(out.aux2, labels))
    groups = [[p for p in getattr(work, name).parameters()] for name in layers]
    flat = [p for g in groups for p in g]
    g_main = torch.autograd.grad(main, flat, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(aux, flat, allow_unused=True)
    main_norms, total_norms = [], []
    k = 0
    for g in groups:
        sq_main = sq_total = 0.0
        for _ in g:
            gm = g_main[k] if g_main[k] is not None else torch.zeros(())
            ga = g_aux[k] if g_aux[k] is not None else torch.zeros(())
            sq_main += float((gm.double() ** 2).sum())
            sq_total += float(((gm + ga).double() ** 2).sum())
            k += 1
        main_norms.append(sq_main ** 0.5)
        total_norms.append(sq_total ** 0.5)
    return AuxGradient(tuple(layers), tuple(main_norms), tuple(total_norms), aux_weight)
