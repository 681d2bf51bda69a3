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
from contextlib import contextmanager
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


def _hits(logits: torch.Tensor, labels: torch.Tensor) -> int:
    return int((logits.argmax(1) == labels).sum())


class _Replay(nn.Module):
    """Stands in for the trunk's first layer: returns the stored input of the module under
    ablation, whatever it is given."""

    def __init__(self, stored: torch.Tensor):
        super().__init__()
        self.stored = stored

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.stored


def _trunk_before(model: nn.Module, key: str) -> list[str]:
    """Names of the children the forward runs before Inception ``key``: GoogLeNet registers its
    trunk in forward order (stem, modules, pools), its heads after it."""
    names = []
    for name, _ in model.named_children():
        if name == f"inception{key}":
            return names
        names.append(name)
    raise UserError(f"{type(model).__name__} has no child inception{key}")


@contextmanager
def _starting_at(model: nn.Module, key: str, stored: torch.Tensor):
    """Run ``model``'s forward from Inception ``key`` on, fed ``stored`` (that module's input
    in an intact pass): the first trunk layer replays it, the rest of the prefix passes it on."""
    names = _trunk_before(model, key)
    kept = {name: getattr(model, name) for name in names}
    for i, name in enumerate(names):
        setattr(model, name, _Replay(stored) if i == 0 else nn.Identity())
    try:
        yield model
    finally:
        for name, child in kept.items():
            setattr(model, name, child)


def _intact_pass(model: nn.Module, modules, x: torch.Tensor):
    """(logits, {key: input of Inception key}) of one intact forward pass."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda _m, args, key=key: inputs.__setitem__(key, args[0]))
               for key, m in modules.items()]
    try:
        return model(x), inputs  # N x num_classes
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class BranchAblation:
    """``base_acc``: intact test accuracy; ``drop[module][branch]``: accuracy lost (fraction)
    when that one branch of that one module is zeroed."""

    base_acc: float
    drop: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def branch_ablation(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                    batch_size: int = 250) -> BranchAblation:
    """Zero each branch of each Inception module in turn (eval mode) and measure the drop.

    Per batch of ``images``, one intact pass stores every module's input; each ablated pass
    then starts at its module (what runs before it is unchanged by the ablation)."""
    work = copy.deepcopy(model).float().eval()
    branches = _module_branches(work)
    modules = work.inception_modules()
    base_hits = 0
    hits = {key: dict.fromkeys(BRANCHES, 0) for key in branches}
    for i in range(0, len(labels), batch_size):
        x, y = images[i:i + batch_size].float(), labels[i:i + batch_size]
        logits, inputs = _intact_pass(work, modules, x)
        base_hits += _hits(logits, y)
        for key, module_branches in branches.items():
            with _starting_at(work, key, inputs[key]):
                for name, branch in zip(BRANCHES, module_branches, strict=True):
                    handle = branch.register_forward_hook(_zero_output)
                    try:
                        hits[key][name] += _hits(work(x), y)
                    finally:
                        handle.remove()
    n = max(len(labels), 1)
    base = base_hits / n
    drop = {key: {name: base - h / n for name, h in row.items()} for key, row in hits.items()}
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
