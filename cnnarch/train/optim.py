"""The fused SGD update, without copies for channels_last parameters.

PyTorch's fused CPU SGD kernel (``torch.optim.SGD(fused=True)``) wants contiguous tensors:
given a channels_last convolution weight it clones the weight, its gradient and its momentum
buffer, updates the clones and copies them back, every step (the cost is measured in
docs/benchmarks.md). The update is elementwise, so the layout does not matter to it: :class:`FusedSGD` hands the
kernel each tensor permuted into its contiguous order (a view of the same memory, no copy).
The arithmetic, the state (``momentum_buffer``) and the state_dict are SGD's own.

It also mends a layout case the built-in gets wrong: in torch 2.14 the fused CPU step of a
channels_last parameter whose gradient is NCHW (assigned by hand; backward gives gradients
the parameter's layout) updates the wrong elements (max error 0.34 on a unit-normal test,
``tests/train/test_optim.py``). :class:`FusedSGD` first copies such a gradient into the
parameter's layout.
"""

from __future__ import annotations

import torch

try:  # the function SGD(fused=True) calls; PyTorch >= 2.3
    from torch.optim.sgd import _fused_sgd
except ImportError:  # pragma: no cover - an older PyTorch: plain SGD.step
    _fused_sgd = None


_CHANNELS_LAST = (0, 2, 3, 1)


def dense_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The dimension order in which ``t`` is laid out contiguously (e.g. (0, 2, 3, 1) for a
    channels_last 4-D tensor), or None when ``t`` is not a permutation of a contiguous tensor."""
    if t.is_contiguous():  # the common cases first: these checks are cached flags
        return tuple(range(t.dim()))
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return _CHANNELS_LAST
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))
    return order if t.permute(order).is_contiguous() else None


def _view(t: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """``t`` permuted into ``order`` (itself when that is the identity: no view to make)."""
    return t if order == tuple(range(t.dim())) else t.permute(order)


class FusedSGD(torch.optim.SGD):
    """``torch.optim.SGD(fused=True)`` whose CPU step passes every tensor to the fused kernel
    in its own dense order instead of cloning the non-contiguous ones (a gradient or buffer in
    another layout is first copied into the parameter's). Where that does not apply (a GPU,
    gradient scaling, a parameter that is not dense, parameters joining late) it is exactly
    ``SGD.step``."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **{**kwargs, "fused": True})

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or _fused_sgd is None or getattr(self, "grad_scale", None) is not None \
                or getattr(self, "found_inf", None) is not None:
            return _sgd_step(self, closure)
        plans = [self._plan(group) for group in self.param_groups]
        if any(plan is None for plan in plans):
            return _sgd_step(self)
        for group, (params, grads, buffers, first) in zip(self.param_groups, plans, strict=True):
            _fused_sgd(params, grads, buffers, None, None,
                       weight_decay=group["weight_decay"], momentum=group["momentum"],
                       lr=group["lr"], dampening=group["dampening"],
                       nesterov=group["nesterov"], maximize=group["maximize"],
                       has_sparse_grad=False)
            if first:  # keep the new buffers, in each parameter's own layout
                for p, buf in zip((p for p in group["params"] if p.grad is not None),
                                  buffers, strict=True):
                    self.state[p]["momentum_buffer"] = _view(buf, _inverse(dense_order(p)))
        return None

    def _plan(self, group):
        """(params, grads, buffers, first step) as contiguous views, or None to fall back."""
        params, grads, buffers = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.device.type != "cpu" or p.grad.is_sparse:
                return None
            order = dense_order(p)
            if order is None:
                return None
            grad, buf = p.grad, self.state[p].get("momentum_buffer")
            if dense_order(grad) != order:  # e.g. an NCHW gradient assigned to a channels_last
                grad = torch.empty_like(p).copy_(grad)  # weight: give it the weight's layout
            if buf is not None and dense_order(buf) != order:
                buf = self.state[p]["momentum_buffer"] = torch.empty_like(p).copy_(buf)
            params.append(_view(p, order))
            grads.append(_view(grad, order))
            buffers.append(None if buf is None else _view(buf, order))
        if group["momentum"] == 0:
            return params, grads, [None] * len(params), False
        has = [b is not None for b in buffers]
        if any(has) and not all(has):
            return None  # some parameters got their first gradient late: SGD's own rules
        return params, grads, buffers, not any(has)


def _sgd_step(opt: FusedSGD, closure=None):
    """``SGD.step`` itself: without the optimizer-hook wrapper PyTorch puts around every
    ``step`` (FusedSGD's own wrapper has already run the hooks once)."""
    step = torch.optim.SGD.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__
    return step(opt, closure)


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    inverse = [0] * len(order)
    for i, d in enumerate(order):
        inverse[d] = i
    return tuple(inverse)
