"""Lesion study (Veit, Wilber and Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", Sec. 4).

At test time, delete blocks from a trained network and measure the test error:

- one block at a time (their Fig. 3): a residual block y = F(x) + x becomes y = x. In a
  ResNet this removes one of the 2^n paths' halves and barely changes the error; in a plain
  network it removes the only path and the error goes to chance;
- k blocks at once, k = 1, 2, ... (their Fig. 5a): random subsets of k blocks, error
  averaged over the subsets; a ResNet degrades smoothly with k.

Only blocks whose input and output have the same shape can be deleted (the identity must
fit); downsampling blocks are kept, as in the paper's main experiment. A deleted block is
replaced by the identity, which equals the ResNet block's own shortcut there: with the
original post-ReLU block the input already passed a ReLU, so relu(x) = x.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import UserError


def _named_blocks(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, block) for every block of ``model.blocks()``, stem to head."""
    if not hasattr(model, "blocks"):
        raise UserError(f"{type(model).__name__} has no .blocks(); use a ResNet or plain model")
    wanted = {id(b): i for i, b in enumerate(model.blocks())}
    found: list[tuple[int, nn.Module, str, nn.Module]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if id(child) in wanted:
                found.append((wanted[id(child)], parent, name, child))
    found.sort(key=lambda t: t[0])
    return [(p, n, b) for _, p, n, b in found]


@torch.no_grad()
def removable_blocks(model: nn.Module, probe: torch.Tensor) -> list[int]:
    """Indices (into ``model.blocks()``) of the blocks whose output has their input's shape,
    found by running ``probe`` (a batch of one or more images) through the model."""
    shapes: dict[int, tuple[torch.Size, torch.Size]] = {}
    blocks = model.blocks()
    handles = [b.register_forward_hook(
        lambda _m, args, out, i=i: shapes.__setitem__(i, (args[0].shape, out.shape)))
        for i, b in enumerate(blocks)]
    was = model.training
    model.eval()
    try:
        model(probe[:1].float())
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return [i for i in range(len(blocks)) if shapes[i][0] == shapes[i][1]]


def lesioned(model: nn.Module, remove: list[int] | tuple[int, ...]) -> nn.Module:
    """A copy of ``model`` (eval mode) with the blocks at ``remove`` replaced by the identity."""
    work = copy.deepcopy(model).float().eval()
    named = _named_blocks(work)
    for i in remove:
        parent, name, _ = named[i]
        setattr(parent, name, nn.Identity())  # y = x: the block's residual branch deleted
    return work


@torch.no_grad()
def test_error(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               batch_size: int = 500) -> float:
    """Top-1 error (fraction) of ``model`` in eval mode on normalised ``images``."""
    model.eval()
    wrong = 0
    for i in range(0, len(labels), batch_size):
        logits = model(images[i:i + batch_size].float())  # N x num_classes
        wrong += int((logits.argmax(1) != labels[i:i + batch_size]).sum())
    return wrong / max(len(labels), 1)


@dataclass(frozen=True)
class LesionResult:
    """Test errors of one trained network under deletion.

    ``single``: block index -> error with that block deleted (removable blocks only);
    ``by_count``: k -> mean error over ``subsets`` random sets of k deleted blocks (k = 0 is
    the intact network)."""

    model: str
    base_error: float
    removable: tuple[int, ...]
    single: dict[int, float]
    by_count: dict[int, float]
    subsets: int

    @property
    def single_increase(self) -> list[float]:
        """Error increase (fraction) from deleting each removable block alone."""
        return [self.single[i] - self.base_error for i in self.removable]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["single"] = {str(k): v for k, v in self.single.items()}
        d["by_count"] = {str(k): v for k, v in self.by_count.items()}
        return d


def lesion_study(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 max_removed: int = 8, subsets: int = 8, seed: int = 0) -> LesionResult:
    """Delete each removable block alone (Veit et al. Fig. 3), then ``subsets`` random sets of
    k = 1..max_removed blocks (Fig. 5a). ``images``: normalised test images."""
    removable = removable_blocks(model, images)
    base = test_error(lesioned(model, []), images, labels)
    single = {i: test_error(lesioned(model, [i]), images, labels) for i in removable}
    rng = random.Random(seed)
    by_count = {0: base}
    for k in range(1, min(max_removed, len(removable)) + 1):
        errs = [test_error(lesioned(model, rng.sample(removable, k)), images, labels)
                for _ in range(subsets)]
        by_count[k] = sum(errs) / len(errs)
    name = getattr(model, "registry_name", getattr(model, "name", "model"))
    return LesionResult(name, base, tuple(removable), single, by_count, subsets)
