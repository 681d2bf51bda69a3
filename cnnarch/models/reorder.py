"""Speed reorderings of the reference models, applied as a transform: the same function,
the same gradients, less work.

The models' ``forward`` reads as the papers draw them (ResNet's stem conv -> BN -> ReLU ->
max-pool; GoogLeNet's conv -> ReLU -> max-pool). A ReLU followed directly by a max-pool
computes the same thing in the other order, because ReLU is monotone:
relu(max(a, b)) = max(relu(a), relu(b)). Taking the pool first runs the ReLU and its
backward on the pooled map, 4x smaller for a 3x3/2 pool. The gradients are the same too:
the pool routes each window's gradient to the same arg-max, and a window whose maximum is
not positive gets zero gradient either way.

Each model declares the pairs that may swap: ``model.relu_pool_pairs()`` returns
(ReLU, max-pool) submodule names where its forward applies the pool right after the ReLU
(none where something else sits between them, e.g. the paper GoogLeNet's LRN). The
transform turns the ReLU into an identity and the pool into ``Sequential(pool, ReLU)``;
no parameter or buffer moves, so ``state_dict()`` keys and checkpoints are unchanged.

Two ways to apply it::

    from cnnarch.models.reorder import reorder_for_speed, reordered_view
    fast = reorder_for_speed(copy.deepcopy(model))  # in place, on a copy (inference)
    runner = reordered_view(model)                  # the same parameters and buffers (training)

The inference fast path reorders its own copy; the training loop runs a view that shares
the model's parameters and buffers, so the optimizer, the checkpoints and
``cnnarch.analysis`` keep working on the untransformed model. Both before ``torch.compile``.
"""

from __future__ import annotations

import copy
import itertools

from torch import nn

__all__ = ["reorder_for_speed", "reordered_view", "swappable_pairs"]


def swappable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (ReLU, max-pool) names the model declares and that are still in paper order."""
    declare = getattr(model, "relu_pool_pairs", None)
    if declare is None:
        return []
    pairs = []
    for relu_name, pool_name in declare():
        relu, pool = model.get_submodule(relu_name), model.get_submodule(pool_name)
        if isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d):
            pairs.append((relu_name, pool_name))
    return pairs


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def reorder_for_speed(model: nn.Module) -> nn.Module:
    """Take every declared max-pool before the ReLU it follows (the same function and
    gradients); in place, returns ``model``. A second call finds nothing left to swap."""
    for relu_name, pool_name in swappable_pairs(model):
        pool = model.get_submodule(pool_name)
        _set_submodule(model, relu_name, nn.Identity())
        _set_submodule(model, pool_name, nn.Sequential(pool, nn.ReLU(inplace=True)))
    return model


def reordered_view(model: nn.Module) -> nn.Module:
    """``model`` reordered for speed, as a second module tree over the very same parameter and
    buffer tensors (a step through it updates ``model``); ``model`` itself keeps the papers'
    order. ``model`` itself when it declares nothing to swap."""
    if not swappable_pairs(model):
        return model
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return reorder_for_speed(copy.deepcopy(model, memo=shared))
