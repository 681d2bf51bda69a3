"""Branch ablation of GoogLeNet's Inception modules at test time (Szegedy et al. 2014, Fig. 2).

An Inception module concatenates four branches along depth: 1x1 | 3x3 | 5x5 | pool
(``branch1`` .. ``branch4``). Ablating a branch sets its slice of the module's output to zero
(the branch's filters removed; its ReLU outputs are non-negative, so zero is their "off"
state) while every other branch and module runs unchanged. The accuracy drop per branch and
per module says whether the branches carry different features: interchangeable branches
would cost the same.

``branch_responses`` reports per-branch response statistics of the intact network on the
same images: mean, standard deviation and fraction of exact zeros (ReLU sparsity) of each
branch's output.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import UserError

BRANCHES = ("1x1", "3x3", "5x5", "pool")  # branch1 .. branch4 of Inception (Fig. 2)


def _module_branches(model: nn.Module) -> dict[str, list[nn.Module]]:
    if not hasattr(model, "inception_modules"):
        raise UserError(f"{type(model).__name__} has no inception_modules(); use a GoogLeNet")
    return {key: [m.branch1, m.branch2, m.branch3, m.branch4]
            for key, m in model.inception_modules().items()}


def _zero_output(_module, _inputs, output):
    return torch.zeros_like(output)


@torch.no_grad()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    correct = 0
    for i in range(0, len(labels), batch_size):
        out = model(images[i:i + batch_size].float())  # N x num_classes (eval mode)
        correct += int((out.argmax(1) == labels[i:i + batch_size]).sum())
    return correct / max(len(labels), 1)


@dataclass(frozen=True)
class BranchAblation:
    """``base_acc``: intact test accuracy; ``drop[module][branch]``: accuracy lost (fraction)
    when that one branch of that one module is zeroed."""

    base_acc: float
    drop: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        return asdict(self)


def branch_ablation(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                    batch_size: int = 500) -> BranchAblation:
    """Zero each branch of each Inception module in turn (eval mode) and measure the drop."""
    work = copy.deepcopy(model).float().eval()
    modules = _module_branches(work)
    base = _accuracy(work, images, labels, batch_size)
    drop: dict[str, dict[str, float]] = {}
    for key, branches in modules.items():
        drop[key] = {}
        for name, branch in zip(BRANCHES, branches, strict=True):
            handle = branch.register_forward_hook(_zero_output)
            try:
                drop[key][name] = base - _accuracy(work, images, labels, batch_size)
            finally:
                handle.remove()
    return BranchAblation(base, drop)


@torch.no_grad()
def branch_responses(model: nn.Module, images: torch.Tensor, *, batch_size: int = 500) -> dict:
    """{module: {branch: {"mean", "std", "zero_fraction", "channels"}}} of each branch's output
    over ``images`` (eval mode)."""
    work = copy.deepcopy(model).float().eval()
    sums: dict[tuple[str, str], list[float]] = {}
    handles = []

    def keep(key, name):
        def hook(_module, _inputs, out):  # out: N x C_branch x H x W
            s = sums.setdefault((key, name), [0.0, 0.0, 0.0, 0.0, float(out.shape[1])])
            x = out.double()
            s[0] += float(x.sum())
            s[1] += float((x * x).sum())
            s[2] += float((x == 0).sum())
            s[3] += x.numel()
        return hook

    for key, branches in _module_branches(work).items():
        for name, branch in zip(BRANCHES, branches, strict=True):
            handles.append(branch.register_forward_hook(keep(key, name)))
    try:
        for i in range(0, len(images), batch_size):
            work(images[i:i + batch_size].float())
    finally:
        for h in handles:
            h.remove()
    out: dict[str, dict[str, dict]] = {}
    for (key, name), (total, sq, zeros, n, ch) in sums.items():
        mean = total / n
        out.setdefault(key, {})[name] = {"mean": mean, "std": max(sq / n - mean * mean, 0.0) ** 0.5,
                                         "zero_fraction": zeros / n, "channels": int(ch)}
    return out
