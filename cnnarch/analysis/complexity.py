"""Parameters and multiply-adds, per layer and per paper row, beside the papers' tables.

Counting convention (the papers' and torchvision's): **MACs** are the multiply-adds of
convolution and linear layers only, for a single image; batch norm, LRN, ReLU, pooling,
the residual addition and biases cost nothing. FLOPs = 2 x MACs. Both papers call MACs
"FLOPs" (ResNet Table 1) or "ops" (GoogLeNet Table 1).

Two independent counters, cross-checked in the tests:

- forward hooks on every ``nn.Conv*d`` / ``nn.Linear`` (MACs = output elements x
  input channels per group x kernel area, or output elements x input features), which give
  the per-layer table;
- ``torch.utils.flop_counter.FlopCounterMode`` (PyTorch's own count of the aten
  convolution / matmul ops, 2 FLOPs per MAC), which gives a total only.

Nothing is computed for real: the model is copied to (or built on) the ``meta`` device,
so counting ResNet-1202 or the naive GoogLeNet costs shapes, not arithmetic.

Mode: models are counted in eval mode, where GoogLeNet's auxiliary classifiers do not run.
``aux=True`` counts a GoogLeNet in training mode, aux heads included (the cost of a
training forward pass; dropout and BN do not change the count, and BN layers normalise with
their running statistics, as batch statistics of the one counted image are undefined on a
1x1 map).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UserError, first_line
from ..models.registry import CONVENTION  # the registry's facts are counted this way
from .tables import giga_or_mega, shape_text, signed_diff, text_table

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.LocalResponseNorm, nn.GroupNorm, nn.LayerNorm)


# --- per-layer counting ----------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRow:
    """One executed layer. ``output_shape`` is per image (batch dimension dropped, C x H x W).
    ``params`` counts the layer's own parameters once (0 on a repeated call of a shared layer);
    ``macs`` is non-zero for conv and linear layers only."""

    name: str
    type: str
    detail: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Complexity:
    """The count for one model and input size (see the module docstring for the convention).

    ``params`` is every parameter of the model as built (unused aux heads included);
    ``macs`` comes from the hooks, ``flop_counter_flops`` from FlopCounterMode.
    ``module_shapes`` / ``module_types`` cover every module that ran, containers too
    (used to aggregate rows); they are not part of ``to_dict()``.
    """

    model: str
    input_size: tuple[int, int, int]
    training: bool
    params: int
    macs: int
    flop_counter_flops: int
    layers: tuple[LayerRow, ...]
    module_shapes: MappingProxyType = field(repr=False, compare=False)
    module_types: MappingProxyType = field(repr=False, compare=False)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.module_shapes.get("", ())

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "mode": "train (aux heads run)" if self.training else "eval",
            "convention": CONVENTION,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "flop_counter_flops": self.flop_counter_flops,
            "output_shape": list(self.output_shape),
            "layers": [dict(asdict(r), output_shape=list(r.output_shape)) for r in self.layers],
        }


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one conv / linear call (biases not counted), else 0."""
    if isinstance(module, _CONV):
        kernel = math.prod(module.kernel_size)
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _detail(module: nn.Module) -> str:
    def size(v) -> str:
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        return "x".join(str(i) for i in (v * 2 if len(v) == 1 else v))

    if isinstance(module, _CONV):
        stride = max(module.stride)
        groups = f", groups {module.groups}" if module.groups > 1 else ""
        return (f"{size(module.kernel_size)}/{stride}, {module.in_channels}->"
                f"{module.out_channels}{groups}")
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}"
    if isinstance(module, _POOL):
        if hasattr(module, "output_size"):
            return f"adaptive -> {size(module.output_size)}"
        stride = module.stride if module.stride is not None else module.kernel_size
        stride = stride[0] if isinstance(stride, (tuple, list)) else stride
        return f"{size(module.kernel_size)}/{stride}"
    return ""


def _wants_row(module: nn.Module) -> bool:
    if next(module.children(), None) is not None:
        return False  # containers: their leaves get the rows
    has_params = next(module.parameters(recurse=False), None) is not None
    return has_params or isinstance(module, _CONV + (nn.Linear,) + _POOL + _NORM)


def _shape(output) -> tuple[int, ...]:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape[1:])
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return tuple(output[0].shape[1:])  # e.g. GoogLeNetOutputs: the main logits
    return ()


def _check_size(input_size) -> tuple[int, int, int]:
    try:
        size = tuple(int(s) for s in input_size)
    except (TypeError, ValueError):
        raise UserError(f"input_size must be (C, H, W) integers, got {input_size!r}") from None
    if len(size) != 3 or min(size) < 1:
        raise UserError(f"input_size must be three positive integers (C, H, W), got {input_size!r}")
    return size


def model_complexity(model: nn.Module, input_size, *, aux: bool = False,
                     name: str | None = None) -> Complexity:
    """Count ``model`` on one ``input_size`` = (C, H, W) image, on the meta device.

    The model is deep-copied (the caller's model, its mode and its device are untouched).
    ``aux=True`` runs a GoogLeNet in training mode so its auxiliary heads are counted.
    A shape the model cannot run raises ``UserError`` naming the model and the input size.
    """
    size = _check_size(input_size)
    name = name or getattr(model, "registry_name", None) or getattr(model, "name", None) \
        or type(model).__name__
    if aux and getattr(model, "aux1", None) is None:
        raise UserError(f"{name} has no auxiliary classifiers to count (build it with aux_logits=True)")
    return _count(copy.deepcopy(model).to("meta"), size, aux, name)


def _count(work: nn.Module, size: tuple[int, int, int], aux: bool, name: str) -> Complexity:
    """Count ``work`` (a model on the meta device that may be modified) in place."""
    work.train(aux)
    # BN on running statistics: the count is the same, and the one counted image has no batch
    # statistics on a 1x1 map (googlenet_tv at 32x32)
    for m in work.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()

    rows: list[LayerRow] = []
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, str] = {}
    calls: dict[str, int] = {}

    def make_hook(mod_name: str, leaf_row: bool):
        def hook(module, inputs, output):
            calls[mod_name] = calls.get(mod_name, 0) + 1
            first = calls[mod_name] == 1
            if first:
                shapes[mod_name] = _shape(output)
                types[mod_name] = type(module).__name__
            if leaf_row:
                params = sum(p.numel() for p in module.parameters(recurse=False)) if first else 0
                row_name = mod_name if first else f"{mod_name}#{calls[mod_name]}"
                rows.append(LayerRow(row_name, type(module).__name__, _detail(module),
                                     _shape(output), params, layer_macs(module, output)))
        return hook

    handles = [m.register_forward_hook(make_hook(n, _wants_row(m))) for n, m in work.named_modules()]
    x = torch.empty((1, *size), device="meta")
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            work(x)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"{name} cannot run on a {'x'.join(map(str, size))} input: "
                        f"{first_line(exc)}") from None
    finally:
        for h in handles:
            h.remove()
    return Complexity(
        model=name,
        input_size=size,
        training=aux,
        params=sum(p.numel() for p in work.parameters()),
        macs=sum(r.macs for r in rows),
        flop_counter_flops=int(counter.get_total_flops()),
        layers=tuple(rows),
        module_shapes=MappingProxyType(shapes),
        module_types=MappingProxyType(types),
    )


def complexity(name: str, input_size=None, *, aux: bool = False, **model_kwargs) -> Complexity:
    """Build registered model ``name`` on the meta device and count it.

    ``input_size`` defaults to the model's native (C, H, W). GoogLeNets are built without
    aux heads unless ``aux=True`` (then they are counted in training mode), so ``params``
    is the inference network's (paper: "~6.8M"). Results are cached (they are immutable).
    """
    from ..models import get_entry

    entry = get_entry(name)
    size = entry.input_size if input_size is None else _check_size(input_size)
    return _complexity_cached(name, size, bool(aux), tuple(sorted(model_kwargs.items())))


@lru_cache(maxsize=128)
def _complexity_cached(name: str, size, aux: bool, kwargs: tuple) -> Complexity:
    from ..models import create_model, get_entry

    entry = get_entry(name)
    kw = dict(kwargs)
    if "aux_logits" in entry.options:
        if aux and kw.get("aux_logits") is False:
            raise UserError("aux=True needs aux_logits=True")
        kw.setdefault("aux_logits", aux)
    elif aux:
        raise UserError(f"{name} has no auxiliary classifiers (only GoogLeNet models have)")
    with torch.device("meta"):
        model = create_model(name, **kw)
    return _count(model, size, aux, name)  # built here on meta: no copy needed


# --- rows of the papers' tables ---------------------------------------------------------------


@dataclass(frozen=True)
class PaperRow:
    """Layers grouped as one row of a paper's table. ``output_shape`` is C x H x W."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def _googlenet_groups(keys) -> list[tuple[str, str, tuple[str, ...]]]:
    groups = [("conv1", "convolution", ("conv1",)),
              ("pool1", "max pool", ("maxpool1", "lrn1")),
              ("conv2", "convolution", ("conv2", "conv3", "lrn2")),  # "3x3 reduce" + 3x3
              ("pool2", "max pool", ("maxpool2",))]
    for key in keys:
        groups.append((key, "inception", (f"inception{key}",)))
        if key == "3b":
            groups.append(("pool3", "max pool", ("maxpool3",)))
        elif key == "4e":
            groups.append(("pool4", "max pool", ("maxpool4",)))
    groups += [("avgpool", "avg pool", ("avgpool",)), ("fc", "linear", ("fc",)),
               ("aux1", "aux classifier (4a)", ("aux1",)), ("aux2", "aux classifier (4d)", ("aux2",))]
    return groups


def _resnet_groups(types) -> list[tuple[str, str, tuple[str, ...]]]:
    n = sum(1 for k in types if re.fullmatch(r"layer\d+", k))
    groups = [("conv1", "convolution", ("conv1", "bn1"))]
    for i in range(1, n + 1):
        mods = ("maxpool", "layer1") if i == 1 else (f"layer{i}",)
        groups.append((f"conv{i + 1}_x", "stage", mods))
    groups.append(("fc", "avg pool, fc", ("avgpool", "fc")))
    return groups


def paper_rows(result: Complexity) -> list[PaperRow]:
    """Group the per-layer rows into the rows of the paper's Table 1.

    GoogLeNet: conv1, pool1, conv2 (the paper's "3x3 reduce" + 3x3, our conv2 + conv3),
    pool2, 3a, 3b, pool3, 4a..4e, pool4, 5a, 5b, avgpool, fc (+ aux1, aux2 when counted).
    ResNet: conv1, conv2_x (with the stem max-pool, as in Table 1), conv3_x, ..., fc.
    Anything else: one row per top-level child. Rows whose layers did not run, or are only
    identities, are left out. A row's output shape is its last module's.
    """
    types = result.module_types
    if "inception3a" in types:
        keys = [k[len("inception"):] for k in types if re.fullmatch(r"inception\w\w", k)]
        groups = _googlenet_groups(keys)
    elif "layer1" in types:
        groups = _resnet_groups(types)
    else:
        groups = [(k, types[k], (k,)) for k in types if k and "." not in k]
    out = []
    for row_name, kind, mods in groups:
        present = [m for m in mods if m in types and types[m] != "Identity"]
        if not present:
            continue
        mine = [r for r in result.layers
                if any(r.name.split("#")[0] == m or r.name.startswith(m + ".") for m in present)]
        out.append(PaperRow(row_name, kind, result.module_shapes[present[-1]],
                            sum(r.params for r in mine), sum(r.macs for r in mine)))
    return out


# --- the papers' numbers, as printed (data, never asserted) -----------------------------------


class PaperTable1Row(NamedTuple):
    """GoogLeNet Table 1 (arXiv:1409.4842), one row as printed: output H x W x C, params in
    thousands (K), ops in millions (M). Inception columns are in ``models.googlenet.TABLE1``."""

    kind: str
    patch: str
    output: tuple[int, int, int]
    params_k: float | None
    ops_m: float | None


# Known slips in the printed table (docs/reference.md): conv1's 2.7K params / 34M ops cannot be
# recomputed (7x7x3x64 = 9.4K weights, 118M MACs); several inception params are off too.
GOOGLENET_PAPER_TABLE1: dict[str, PaperTable1Row] = {
    "conv1": PaperTable1Row("convolution", "7x7/2", (112, 112, 64), 2.7, 34),
    "pool1": PaperTable1Row("max pool", "3x3/2", (56, 56, 64), None, None),
    "conv2": PaperTable1Row("convolution", "3x3/1", (56, 56, 192), 112, 360),
    "pool2": PaperTable1Row("max pool", "3x3/2", (28, 28, 192), None, None),
    "3a": PaperTable1Row("inception", "", (28, 28, 256), 159, 128),
    "3b": PaperTable1Row("inception", "", (28, 28, 480), 380, 304),
    "pool3": PaperTable1Row("max pool", "3x3/2", (14, 14, 480), None, None),
    "4a": PaperTable1Row("inception", "", (14, 14, 512), 364, 73),
    "4b": PaperTable1Row("inception", "", (14, 14, 512), 437, 88),
    "4c": PaperTable1Row("inception", "", (14, 14, 512), 463, 100),
    "4d": PaperTable1Row("inception", "", (14, 14, 528), 580, 119),
    "4e": PaperTable1Row("inception", "", (14, 14, 832), 840, 170),
    "pool4": PaperTable1Row("max pool", "3x3/2", (7, 7, 832), None, None),
    "5a": PaperTable1Row("inception", "", (7, 7, 832), 1072, 54),
    "5b": PaperTable1Row("inception", "", (7, 7, 1024), 1388, 71),
    "avgpool": PaperTable1Row("avg pool", "7x7/1", (1, 1, 1024), None, None),
    "fc": PaperTable1Row("linear", "", (1, 1, 1000), 1000, 1),
}
# Table 1's conv2 row: depth 2, "#3x3 reduce" 64, "#3x3" 192.
GOOGLENET_PAPER_CONV2 = {"n3x3red": 64, "n3x3": 192}
GOOGLENET_PAPER_TOTALS = {"params_m": 6.8, "gmacs": 1.5}  # Sec. 5 text: "~6.8M", "1.5 billion"

# ResNet Table 1, "FLOPs" row (x10^9; these are multiply-adds), by depth.
RESNET_PAPER_GFLOPS: dict[int, float] = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# ResNet Table 6 (CIFAR-10), "# params" column in millions, by depth.
RESNET_CIFAR_PAPER_PARAMS_M: dict[int, float] = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85,
                                                 110: 1.7, 1202: 19.4}

INCEPTION_COLUMNS = ("n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj")
# Where each Table 1 column lives in our Inception module (bottleneck and naive layouts).
_BOTTLENECK_CONVS = {"n1x1": "branch1.conv", "n3x3red": "branch2.0.conv", "n3x3": "branch2.1.conv",
                     "n5x5red": "branch3.0.conv", "n5x5": "branch3.1.conv",
                     "pool_proj": "branch4.1.conv"}
_NAIVE_CONVS = {"n1x1": "branch1.conv", "n3x3": "branch2.conv", "n5x5": "branch3.conv"}


@dataclass(frozen=True)
class GoogLeNetCompareRow:
    """Paper Table 1 beside ours. Columns ``None`` where the row has none (naive: no reductions)."""

    name: str
    kind: str
    output: tuple[int, int, int]  # ours, H x W x C as the paper prints it
    paper_output: tuple[int, int, int]
    columns: dict  # ours, read from the layers that ran
    paper_columns: dict
    params: int
    paper_params_k: float | None
    macs: int
    paper_ops_m: float | None

    @property
    def params_diff(self) -> int | None:
        return None if self.paper_params_k is None else self.params - round(self.paper_params_k * 1e3)

    @property
    def macs_diff(self) -> int | None:
        return None if self.paper_ops_m is None else self.macs - round(self.paper_ops_m * 1e6)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(output=list(self.output), paper_output=list(self.paper_output),
                 params_diff=self.params_diff, macs_diff=self.macs_diff)
        return d


def _hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 3:
        return (shape[1], shape[2], shape[0])
    if len(shape) == 1:
        return (1, 1, shape[0])
    return tuple(shape)  # type: ignore[return-value]


def compare_googlenet_paper(result: Complexity) -> list[GoogLeNetCompareRow]:
    """Every row of GoogLeNet's Table 1 beside ours, with the differences (ours - paper).

    The paper's figures are shown, never asserted: some of its rows are wrong (conv1)."""
    from ..models.googlenet import TABLE1

    shapes = result.module_shapes
    rows = {r.name: r for r in paper_rows(result)}
    out = []
    for key, paper in GOOGLENET_PAPER_TABLE1.items():
        ours = rows.get(key)
        if ours is None:
            continue
        cols: dict = {}
        paper_cols: dict = {}
        if key in TABLE1:
            paper_cols = TABLE1[key]._asdict()
            mode = "bottleneck" if f"inception{key}.branch4.1.conv" in shapes else "naive"
            where = _BOTTLENECK_CONVS if mode == "bottleneck" else _NAIVE_CONVS
            cols = {c: (shapes[f"inception{key}.{where[c]}"][0] if c in where else None)
                    for c in INCEPTION_COLUMNS}
        elif key == "conv2":
            paper_cols = dict(GOOGLENET_PAPER_CONV2)
            cols = {"n3x3red": shapes["conv2"][0], "n3x3": shapes["conv3"][0]}
        out.append(GoogLeNetCompareRow(key, paper.kind, _hwc(ours.output_shape), paper.output,
                                       cols, paper_cols, ours.params, paper.params_k, ours.macs,
                                       paper.ops_m))
    return out


_SHORT_COLUMNS = {"n1x1": "#1x1", "n3x3red": "#3x3r", "n3x3": "#3x3", "n5x5red": "#5x5r",
                  "n5x5": "#5x5", "pool_proj": "pool"}


def _compare_cells(c: GoogLeNetCompareRow) -> list[str]:
    """One row of the side-by-side table: Inception columns as 'ours' or 'ours/paper'."""
    cells = []
    for col in INCEPTION_COLUMNS:
        ours, paper = c.columns.get(col), c.paper_columns.get(col)
        if ours is None and paper is None:
            cells.append("")
        elif ours == paper:
            cells.append(str(ours))
        else:
            cells.append(f"{'-' if ours is None else ours}/{'-' if paper is None else paper}")
    out = shape_text(c.output)
    if tuple(c.output) != tuple(c.paper_output):
        out += f" (paper {shape_text(c.paper_output)})"
    pk = "" if c.paper_params_k is None else f"{c.paper_params_k:g}"
    pm = "" if c.paper_ops_m is None else f"{c.paper_ops_m:g}"
    dk = "" if c.params_diff is None else signed_diff(c.params_diff / 1e3)
    dm = "" if c.macs_diff is None else signed_diff(c.macs_diff / 1e6)
    return [c.name, c.kind, out, *cells, f"{c.params / 1e3:.1f}", pk, dk, f"{c.macs / 1e6:.1f}",
            pm, dm]


def render_googlenet_compare(rows: list[GoogLeNetCompareRow] | tuple[GoogLeNetCompareRow, ...],
                             model: str, input_size) -> str:
    """:func:`compare_googlenet_paper`'s rows as a table, with the totals beside the paper's."""
    lines = [f"GoogLeNet Table 1 (arXiv:1409.4842, as printed) beside {model}: diff = ours - paper.",
             "Inception columns show ours; 'a/b' = ours a, paper b where they differ "
             "('-' = no such layer)."]
    if model != "googlenet" or tuple(input_size) != (3, 224, 224):
        lines.append(f"note: the paper's table is for googlenet at 3x224x224; this is {model} at "
                     f"{shape_text(input_size)}")
    lines.append(text_table(["row", "type", "output (HxWxC)",
                             *(_SHORT_COLUMNS[c] for c in INCEPTION_COLUMNS), "params K",
                             "paper K", "diff K", "MACs M", "paper M", "diff M"],
                            [_compare_cells(c) for c in rows], right=range(3, 15)))
    params, macs = sum(c.params for c in rows), sum(c.macs for c in rows)
    lines.append(f"totals: ours {params / 1e6:.3f} M params, {macs / 1e9:.3f} G MACs; paper text: "
                 f"~{GOOGLENET_PAPER_TOTALS['params_m']} M params, "
                 f"~{GOOGLENET_PAPER_TOTALS['gmacs']} G multiply-adds")
    conv1 = next((c for c in rows if c.name == "conv1"), None)
    if conv1 is not None and conv1.macs_diff:
        lines.append(f"conv1: the paper prints {conv1.paper_ops_m:g}M ops; 7x7 conv on the image "
                     f"counts {conv1.macs / 1e6:.1f}M here (the printed figure cannot be "
                     "recomputed)")
    return "\n".join(lines)


@dataclass(frozen=True)
class ResNetCompare:
    """ResNet Table 1 FLOPs (or Table 6 params for the CIFAR family) beside ours."""

    model: str
    depth: int
    family: str
    stride_at: str | None
    macs: int
    params: int
    paper_gflops: float | None
    paper_params_m: float | None
    v1_macs: int | None  # stride on the first 1x1 (paper), bottleneck nets only
    v15_macs: int | None  # stride on the 3x3 (torchvision v1.5), bottleneck nets only
    rows: tuple[PaperRow, ...]

    @property
    def macs_diff(self) -> float | None:
        return None if self.paper_gflops is None else self.macs - round(self.paper_gflops * 1e9)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [dict(asdict(r), output_shape=list(r.output_shape)) for r in self.rows]
        d["macs_diff"] = self.macs_diff
        return d

    def render(self, input_size, native_size) -> str:
        """The paper's figure beside ours; ``input_size`` is the size counted."""
        lines = [f"ResNet paper beside {self.model} (arXiv:1512.03385; the paper's 'FLOPs' are "
                 "multiply-adds):"]
        if tuple(input_size) != tuple(native_size):
            lines.append(f"note: the paper's figures are for {shape_text(native_size)}; this is "
                         f"{shape_text(input_size)}")
        if self.paper_gflops is not None:
            lines += self._table1_lines()
        elif self.paper_params_m is not None:
            diff = self.params - round(self.paper_params_m * 1e6)
            lines += [f"  Table 6 params: {self.paper_params_m:g} M   ours: {self.params:,}   "
                      f"diff {diff:+,} (the paper rounds)",
                      f"  ours: {self.macs / 1e6:.1f} M MACs (the paper gives no FLOPs for CIFAR)"]
        else:
            lines.append("  the paper gives no figures for this depth")
        return "\n".join(lines)

    def _table1_lines(self) -> list[str]:
        where = {"3x3": "v1.5, stride on the 3x3 as torchvision",
                 "1x1": "v1, stride on the first 1x1 as the paper"}.get(self.stride_at, "basic blocks")
        diff = self.macs_diff
        lines = [f"  Table 1 FLOPs: {self.paper_gflops:g} x10^9   ours: {self.macs / 1e9:.3f} G "
                 f"MACs ({where})   diff {diff / 1e9:+.3f} G "
                 f"({diff / (self.paper_gflops * 1e9):+.1%})"]
        if self.v1_macs is None:
            return lines + ["  basic blocks have no 1x1 to put the stride on: v1 and v1.5 are "
                            "the same network"]
        return lines + [
            f"  v1 (--stride-at 1x1, the paper): {self.v1_macs / 1e9:.3f} G;  "
            f"v1.5 (default, torchvision): {self.v15_macs / 1e9:.3f} G",
            "  torchvision's v1.5 moves the downsampling stride of the bottleneck from the first "
            "1x1 to the 3x3, so the first 1x1 of conv3_x, conv4_x and conv5_x runs on the larger "
            f"map: +{(self.v15_macs - self.v1_macs) / 1e9:.3f} G"]


def compare_resnet_paper(name: str, input_size=None, **model_kwargs) -> ResNetCompare:
    """Our MACs beside ResNet Table 1's FLOPs (ImageNet; both strides for bottleneck nets),
    or our parameters beside Table 6's (CIFAR)."""
    from ..models import get_entry

    entry = get_entry(name)
    if not entry.family.startswith(("resnet", "plain")):
        raise UserError(f"{name} is not a ResNet")
    depth = entry.depth
    result = complexity(name, input_size, **model_kwargs)
    v1 = v15 = None
    imagenet = entry.family.endswith("imagenet")
    if imagenet and depth >= 50:
        other = {k: v for k, v in model_kwargs.items() if k != "stride_at"}
        v1 = complexity(name, input_size, stride_at="1x1", **other).macs
        v15 = complexity(name, input_size, stride_at="3x3", **other).macs
    return ResNetCompare(
        model=name, depth=depth, family=entry.family,
        stride_at=model_kwargs.get("stride_at", "3x3") if imagenet and depth >= 50 else None,
        macs=result.macs, params=result.params,
        paper_gflops=RESNET_PAPER_GFLOPS.get(depth) if imagenet else None,
        paper_params_m=None if imagenet else RESNET_CIFAR_PAPER_PARAMS_M.get(depth),
        v1_macs=v1, v15_macs=v15, rows=tuple(paper_rows(result)))


# --- the lecture's Inception cost example (CS231n lecture 9) ---------------------------------

LECTURE_INPUT = (256, 28, 28)  # C, H, W
LECTURE_NAIVE = dict(n1x1=128, n3x3=192, n5x5=96)
LECTURE_BOTTLENECK = dict(n1x1=128, n3x3red=64, n3x3=192, n5x5red=64, n5x5=96, pool_proj=64)
# What the slides print ("Total: 854M ops", "Total: 358M ops").
LECTURE_SLIDE_MACS = {"naive": 854_000_000, "bottleneck": 358_000_000}
# The example's exact figures: the sum of the slide's own terms (H_out x W_out x C_out x k x k
# x C_in per convolution) and the output depth of the concatenation (naive: 128 + 192 + 96 +
# the pool's 256 input channels; bottleneck: 128 + 192 + 96 + 64).
LECTURE_NAIVE_MACS = 854_196_224
LECTURE_NAIVE_DEPTH = 672
LECTURE_BOTTLENECK_MACS = 271_351_808
LECTURE_BOTTLENECK_DEPTH = 480

_ROLES = {"branch1.conv": "1x1 branch", "branch2.conv": "3x3 branch", "branch3.conv": "5x5 branch",
          "branch2.0.conv": "3x3 reduce", "branch2.1.conv": "3x3 branch",
          "branch3.0.conv": "5x5 reduce", "branch3.1.conv": "5x5 branch",
          "branch4.1.conv": "pool proj"}


@dataclass(frozen=True)
class ConvTerm:
    """One convolution of the module: counted MACs and the slide's closed form
    H_out x W_out x C_out x k x k x C_in."""

    layer: str
    role: str
    label: str  # the slide's notation, e.g. "3x3 conv, 192"
    kernel: int
    in_depth: int
    out_depth: int
    out_hw: tuple[int, int]
    macs: int

    @property
    def formula(self) -> str:
        h, w = self.out_hw
        return (f"{h}x{w}x{self.out_depth} x {self.kernel}x{self.kernel}x{self.in_depth}")

    @property
    def formula_macs(self) -> int:
        h, w = self.out_hw
        return h * w * self.out_depth * self.kernel * self.kernel * self.in_depth


@dataclass(frozen=True)
class ModuleCost:
    mode: str
    input_shape: tuple[int, int, int]  # C, H, W
    output_shape: tuple[int, int, int]  # C, H, W, from the forward pass
    output_depth: int
    depth_terms: tuple[tuple[str, int], ...]  # what the concatenated depth is made of
    terms: tuple[ConvTerm, ...]
    params: int
    macs: int
    slide_macs: int


@dataclass(frozen=True)
class SlideCheck:
    """Does the slide's printed bottleneck total equal our sum plus one term counted twice?"""

    printed: int
    ours: int
    explained: bool
    double_counted: str | None  # the term's label
    double_counted_macs: int | None
    sum_with_double: int | None

    def sentence(self) -> str:
        if not self.explained:
            return (f"The slide prints {self.printed / 1e6:.0f}M; the six terms sum to "
                    f"{self.ours:,} ({self.ours / 1e6:.2f}M); no single term counted twice "
                    "explains the difference.")
        return (f"The slide prints {self.printed / 1e6:.0f}M, but its six terms sum to "
                f"{self.ours:,} ({self.ours / 1e6:.2f}M). Adding the '{self.double_counted}' term "
                f"({self.double_counted_macs / 1e6:.2f}M) a second time gives "
                f"{self.sum_with_double:,} ({self.sum_with_double / 1e6:.2f}M), the printed "
                f"figure: the slide counts that term twice.")


@dataclass(frozen=True)
class InceptionCostExample:
    naive: ModuleCost
    bottleneck: ModuleCost
    slide: SlideCheck

    @property
    def saving(self) -> float:
        return self.naive.macs / self.bottleneck.macs

    def to_dict(self) -> dict:
        def mod(m: ModuleCost) -> dict:
            d = asdict(m)
            d["terms"] = [dict(asdict(t), formula=t.formula, formula_macs=t.formula_macs)
                          for t in m.terms]
            d["depth_terms"] = [{"branch": b, "depth": n} for b, n in m.depth_terms]
            return d

        return {"convention": CONVENTION, "naive": mod(self.naive),
                "bottleneck": mod(self.bottleneck),
                "slide": dict(asdict(self.slide), explanation=self.slide.sentence()),
                "saving": self.saving}

    def render(self) -> str:
        """Both modules term by term, the slide's arithmetic checked, and the saving."""
        c, h, w = self.naive.input_shape
        lines = [f"The lecture's Inception cost example (CS231n lecture 9): input {h}x{w}x{c}, "
                 "stride 1, 'same' padding.", f"{CONVENTION}; the max-pool costs none."]
        for m, title in ((self.naive, "Naive module (Fig. 2a)"),
                         (self.bottleneck, "Module with 1x1 bottlenecks (Fig. 2b)")):
            oc, oh, ow = m.output_shape
            parts = " + ".join(f"{n} ({b})" for b, n in m.depth_terms)
            rows = [[t.role, t.label, t.formula, f"{t.macs:,}"] for t in m.terms]
            rows.append(["total", "", "", f"{m.macs:,}"])
            lines += ["", f"{title}: output {oh}x{ow}x{oc}, depth {parts} = {m.output_depth}",
                      text_table(["branch", "conv", "H x W x C_out x k x k x C_in", "MACs"], rows,
                                 right={3}),
                      f"slide prints: {m.slide_macs / 1e6:.0f}M; counted here: {m.macs / 1e6:.2f}M"]
        lines += ["", self.slide.sentence(),
                  f"The bottlenecks cut the multiply-adds {self.saving:.2f}x "
                  f"({self.naive.macs / 1e6:.0f}M -> {self.bottleneck.macs / 1e6:.0f}M) and the "
                  f"output depth {self.naive.output_depth} -> {self.bottleneck.output_depth}."]
        return "\n".join(lines)


def _module_cost(mode: str, row_kwargs: dict) -> ModuleCost:
    from ..models.googlenet import Inception, InceptionRow

    c, h, w = LECTURE_INPUT
    full = dict(n1x1=0, n3x3red=0, n3x3=0, n5x5red=0, n5x5=0, pool_proj=0) | row_kwargs
    with torch.device("meta"):
        module = Inception(c, InceptionRow(**full), mode=mode)
    result = model_complexity(module, LECTURE_INPUT, name=f"inception ({mode})")
    terms = []
    for r in result.layers:
        if r.type != "Conv2d":
            continue
        conv = module.get_submodule(r.name)
        k = conv.kernel_size[0]
        terms.append(ConvTerm(r.name, _ROLES.get(r.name, r.name), f"{k}x{k} conv, {conv.out_channels}",
                              k, conv.in_channels, conv.out_channels, r.output_shape[1:], r.macs))
    if mode == "naive":
        depth_terms = (("1x1", full["n1x1"]), ("3x3", full["n3x3"]), ("5x5", full["n5x5"]),
                       ("pool: all input channels", c))
    else:
        depth_terms = (("1x1", full["n1x1"]), ("3x3", full["n3x3"]), ("5x5", full["n5x5"]),
                       ("pool proj", full["pool_proj"]))
    out = result.output_shape
    return ModuleCost(mode, LECTURE_INPUT, out, out[0], depth_terms, tuple(terms), result.params,
                      result.macs, LECTURE_SLIDE_MACS[mode])


def inception_cost_example() -> InceptionCostExample:
    """The lecture's example on a 28x28x256 input, counted on our ``Inception`` module.

    Naive: 1x1x128, 3x3x192, 5x5x96 convs + 3x3 max-pool -> depth 672, 854,196,224 MACs.
    Bottleneck: 64-filter 1x1 reductions before the 3x3 and 5x5 and after the pool, plus the
    1x1x128 branch -> depth 480, 271,351,808 MACs. The slide's 358M is checked against
    "our sum + one term counted twice", computed here, not assumed.
    """
    naive = _module_cost("naive", LECTURE_NAIVE)
    bottleneck = _module_cost("bottleneck", LECTURE_BOTTLENECK)
    printed = LECTURE_SLIDE_MACS["bottleneck"]
    match = None
    for t in bottleneck.terms:  # which single term, added again, rounds to the printed total?
        if round((bottleneck.macs + t.macs) / 1e6) == printed // 1_000_000:
            match = t
            break
    slide = SlideCheck(printed, bottleneck.macs, match is not None,
                       match.label if match else None, match.macs if match else None,
                       bottleneck.macs + match.macs if match else None)
    return InceptionCostExample(naive, bottleneck, slide)


# --- naive vs bottleneck, whole network ---------------------------------------------------------


@dataclass(frozen=True)
class ModuleStat:
    in_depth: int
    out_depth: int
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class InceptionModeRow:
    key: str
    bottleneck: ModuleStat
    naive: ModuleStat


@dataclass(frozen=True)
class InceptionModeComparison:
    model: str
    input_size: tuple[int, int, int]
    modules: tuple[InceptionModeRow, ...]
    total_params: dict  # mode -> whole network
    total_macs: dict

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        """One row per Inception module, both layouts side by side, and the whole network."""
        b, n = "bottleneck", "naive"
        table = text_table(
            ["module", "in", "out", "params", "MACs", "naive in", "naive out", "naive params",
             "naive MACs"],
            [[m.key, m.bottleneck.in_depth, m.bottleneck.out_depth, f"{m.bottleneck.params:,}",
              giga_or_mega(m.bottleneck.macs), m.naive.in_depth, m.naive.out_depth,
              f"{m.naive.params:,}", giga_or_mega(m.naive.macs)] for m in self.modules],
            right=range(1, 9))
        return "\n".join([
            f"The same switch on the whole network ({self.model}, input "
            f"{shape_text(self.input_size)}); naive depth only grows, as each pool passes its "
            "whole input on:", table,
            f"whole network: bottleneck {self.total_params[b]:,} params, "
            f"{giga_or_mega(self.total_macs[b])} MACs; naive {self.total_params[n]:,} params, "
            f"{giga_or_mega(self.total_macs[n])} MACs "
            f"({self.total_macs[n] / self.total_macs[b]:.1f}x)"])


def naive_vs_bottleneck(model: str = "googlenet", input_size=None) -> InceptionModeComparison:
    """Per Inception module, bottleneck (the paper) vs naive (the lecture's Fig. 2a):
    input/output depth, params and MACs. Naive depths only grow (the pool keeps all input
    channels). Use ``googlenet`` at 224 or ``googlenet_small`` at 32."""
    from ..models import create_model, get_entry

    entry = get_entry(model)
    if entry.family != "googlenet":
        raise UserError(f"{model} has no Inception modules; choose a GoogLeNet model")
    size = entry.input_size if input_size is None else _check_size(input_size)
    stats: dict[str, dict[str, ModuleStat]] = {}
    totals_p, totals_m = {}, {}
    for mode in ("bottleneck", "naive"):
        with torch.device("meta"):
            net = create_model(model, inception=mode, aux_logits=False)
        result = complexity(model, size, inception=mode)
        totals_p[mode], totals_m[mode] = result.params, result.macs
        rows = {r.name: r for r in paper_rows(result)}
        for key, module in net.inception_modules().items():
            r = rows[key]
            stats.setdefault(key, {})[mode] = ModuleStat(
                module.branch1.conv.in_channels, r.output_shape[0], r.output_shape, r.params,
                r.macs)
    modules = tuple(InceptionModeRow(k, v["bottleneck"], v["naive"]) for k, v in stats.items())
    return InceptionModeComparison(model, size, modules, totals_p, totals_m)
