"""The model registry, filled by ``@register_model`` next to each builder.

A builder is a function whose keyword-only parameters are the model's options (so the
options listed and the options accepted are the same list) and which may take the depth as
its one positional parameter. ``register_model`` records, beside it, one entry per name:
family, native input size, depth, and two facts verified by the test suite over the whole
registry: the parameter count and the multiply-adds of one image at the native size (conv
and linear layers only; GoogLeNets without their auxiliary heads, which run in training
only). ``cnnarch models`` prints these facts from the catalog they are copied into
(``cnnarch.models.catalog``), so it computes nothing and needs no torch.

``create_model`` checks the name, every option's name and type (from the builder's
annotations) and raises ``UserError`` naming the bad one.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType, UnionType

from torch import nn

from ..errors import UserError

# How ``params`` and ``macs`` are counted (cnnarch.analysis.complexity counts them so).
CONVENTION = ("MACs = multiply-adds of conv + linear layers only (the papers' convention; "
              "BN, pooling, ReLU, additions and biases not counted), one image; FLOPs = 2 x MACs")
# What ``params`` and ``macs`` leave out of the GoogLeNets.
AUX_NOTE = ("GoogLeNet models are counted without their auxiliary classifiers, which run in "
            "training only (see `cnnarch summary googlenet --aux`)")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model. ``options`` and ``defaults`` come from the builder's signature."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int, int]  # native (C, H, W)
    depth: int  # layers with weights, as the paper counts them
    params: int  # as built by default (GoogLeNet: without aux heads)
    macs: int  # one image at input_size, eval mode
    description: str
    options: tuple[str, ...]
    defaults: Mapping[str, object] = field(repr=False)
    types: Mapping[str, object] = field(repr=False)

    @property
    def flops(self) -> int:
        return 2 * self.macs


MODELS: dict[str, ModelEntry] = {}


def _keyword_options(builder: Callable) -> tuple[dict, dict, bool]:
    """The builder's keyword-only parameters (defaults, annotations) and whether it takes
    the depth positionally."""
    sig = inspect.signature(builder)
    hints = typing.get_type_hints(builder)
    defaults, types = {}, {}
    positional = False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            defaults[p.name] = p.default
            types[p.name] = hints.get(p.name, object)
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional = True
        else:
            raise TypeError(f"builder {builder.__name__} may not take *args or **kwargs")
    return defaults, types, positional


def register_model(family: str, input_size: tuple[int, int, int],
                   facts: Mapping[str, tuple[int, int, int]], description: str):
    """Register ``builder`` under every name of ``facts``: name -> (depth, params, MACs).

    A builder with a positional parameter gets the depth bound to it. ``description`` may
    use ``{depth}``.
    """
    def wrap(builder: Callable[..., nn.Module]):
        defaults, types, positional = _keyword_options(builder)
        for name, (depth, params, macs) in facts.items():
            if name in MODELS:
                raise RuntimeError(f"model {name!r} is registered twice")
            MODELS[name] = ModelEntry(
                name, partial(builder, depth) if positional else builder, family, input_size,
                depth, params, macs, description.format(depth=depth), tuple(defaults),
                MappingProxyType(defaults), MappingProxyType(types))
        return builder
    return wrap


def list_models(pattern: str | None = None, *, family: str | None = None) -> list[str]:
    """Registered names in registry order; ``pattern`` is a shell-style (timm) pattern,
    e.g. ``"resnet*"`` or ``"*googlenet*"``; ``family`` keeps one family."""
    if pattern is not None and not isinstance(pattern, str):
        raise UserError(f"pattern must be a string such as 'resnet*', got {pattern!r}")
    return [n for n, e in MODELS.items()
            if (pattern is None or fnmatch.fnmatchcase(n, pattern))
            and (family is None or e.family == family)]


def get_entry(name: str) -> ModelEntry:
    entry = MODELS.get(name) if isinstance(name, str) else None
    if entry is None:
        close = difflib.get_close_matches(str(name), MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model {name!r}{hint} (see `cnnarch models`)")
    return entry


def _accepts(value, hint) -> bool:
    """Whether ``value`` has the annotated type (int, float, bool, str and their unions)."""
    if hint is object:
        return True
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_accepts(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint) -> str:
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is float:
        return "a finite number"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def check_options(entry: ModelEntry, kwargs: Mapping[str, object]) -> None:
    """Raise ``UserError`` for an option ``entry`` does not have or a value of the wrong type;
    integer options (counts: ``num_classes``, ``in_chans``) must be >= 1."""
    unknown = sorted(set(kwargs) - set(entry.options))
    if unknown:
        raise UserError(f"{entry.name} has no option {', '.join(map(repr, unknown))}; "
                        f"valid options: {', '.join(entry.options)}")
    for key, value in kwargs.items():
        hint = entry.types[key]
        if not _accepts(value, hint):
            raise UserError(f"invalid {key}={value!r} for {entry.name}: "
                            f"expected {_type_name(hint)}")
        if hint is int and value < 1:
            raise UserError(f"invalid {key}={value!r} for {entry.name}: must be >= 1")


def create_model(name: str, pretrained: bool = False, weights: str | None = None,
                 **kwargs) -> nn.Module:
    """Build a registered model. Options use the papers' vocabulary (``get_entry(name).options``).

    ``pretrained=True`` (or a ``weights`` name, e.g. ``"IMAGENET1K_V1"``) loads published
    ImageNet weights (``cnnarch.models.pretrained``) for the torchvision-compatible models.
    """
    entry = get_entry(name)
    if not isinstance(pretrained, bool):
        raise UserError(f"invalid pretrained={pretrained!r}: expected True or False")
    if weights is not None and not isinstance(weights, str):
        raise UserError(f"invalid weights={weights!r}: expected a name such as 'IMAGENET1K_V1'")
    check_options(entry, kwargs)
    model = entry.builder(**kwargs)
    model.registry_name = name
    if pretrained or weights is not None:
        from .pretrained import load_pretrained

        load_pretrained(model, name, weights)
    return model
