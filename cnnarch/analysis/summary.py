"""What the counting commands print, as results that render themselves.

:func:`summarize` (``cnnarch summary``): one model's count per layer and per paper row,
optionally beside the paper's table. :func:`inception_cost_summary` (``cnnarch
inception-cost``): the lecture's Inception example and the same switch on a whole GoogLeNet.
Each result renders as text (``render()``) or JSON (``to_dict()``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import get_entry
from .complexity import (
    CONVENTION,
    Complexity,
    GoogLeNetCompareRow,
    InceptionCostExample,
    InceptionModeComparison,
    PaperRow,
    ResNetCompare,
    compare_googlenet_paper,
    compare_resnet_paper,
    complexity,
    inception_cost_example,
    naive_vs_bottleneck,
    paper_rows,
    render_googlenet_compare,
)
from .tables import giga_or_mega, shape_text, text_table


@dataclass(frozen=True)
class ModelSummary:
    """A model counted at one input size (``result``), grouped into the paper's rows, and
    the paper's table beside it when asked for (``compare``)."""

    model: str
    family: str
    native_size: tuple[int, int, int]
    options: dict  # the model options given, e.g. {"inception": "naive"}
    aux: bool  # counted in training mode, with GoogLeNet's auxiliary classifiers
    result: Complexity
    rows: tuple[PaperRow, ...]
    compare: tuple[GoogLeNetCompareRow, ...] | ResNetCompare | None

    def to_dict(self) -> dict:
        out = self.result.to_dict()
        out["options"] = dict(self.options, aux=self.aux)
        out["rows"] = [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape),
                        "params": r.params, "macs": r.macs} for r in self.rows]
        if isinstance(self.compare, tuple):
            out["compare"] = [c.to_dict() for c in self.compare]
        elif self.compare is not None:
            out["compare"] = self.compare.to_dict()
        return out

    def render(self) -> str:
        r = self.result
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        mode = "training mode, aux heads counted" if self.aux else "eval mode"
        lines = [f"{self.model}{f' ({opts})' if opts else ''}: input {shape_text(r.input_size)}, "
                 f"{mode}", f"{CONVENTION}.", "",
                 text_table(["layer", "type", "output (CxHxW)", "params", "MACs"],
                            [[x.name, f"{x.type} {x.detail}".strip(), shape_text(x.output_shape),
                              f"{x.params:,}", f"{x.macs:,}"] for x in r.layers], right={3, 4}),
                 "", "By paper row:",
                 text_table(["row", "kind", "output (CxHxW)", "params", "MACs"],
                            [[x.name, x.kind, shape_text(x.output_shape), f"{x.params:,}",
                              f"{x.macs:,}"] for x in self.rows], right={3, 4}),
                 "",
                 f"total: params {r.params:,}; MACs {r.macs:,} ({giga_or_mega(r.macs)}); "
                 f"FLOPs {r.flops:,}"]
        agree = "agrees" if r.flop_counter_flops == r.flops else "DISAGREES"
        lines.append(f"cross-check: torch.utils.flop_counter counts {r.flop_counter_flops:,} "
                     f"FLOPs, {agree} with 2 x the hooks' MACs")
        if self.family == "googlenet" and not self.aux:
            lines.append("params exclude the auxiliary classifiers (training only; --aux counts them)")
        if isinstance(self.compare, tuple):
            lines += ["", render_googlenet_compare(self.compare, self.model, r.input_size)]
        elif self.compare is not None:
            lines += ["", self.compare.render(r.input_size, self.native_size)]
        return "\n".join(lines)


def summarize(name: str, input_size=None, *, aux: bool = False, compare_paper: bool = False,
              **options) -> ModelSummary:
    """Count registered model ``name`` (built with ``options``) at ``input_size`` (default:
    its native size); with ``compare_paper``, beside its paper's table (GoogLeNet Table 1,
    ResNet Table 1 or Table 6). Bad names, options or sizes raise ``UserError``."""
    entry = get_entry(name)
    result = complexity(name, input_size, aux=aux, **options)
    compare = None
    if compare_paper and entry.family == "googlenet":
        compare = tuple(compare_googlenet_paper(result))
    elif compare_paper:
        compare = compare_resnet_paper(name, result.input_size, **options)
    return ModelSummary(name, entry.family, entry.input_size, dict(options), bool(aux), result,
                        tuple(paper_rows(result)), compare)


@dataclass(frozen=True)
class InceptionCostSummary:
    """The lecture's Inception cost example and the same switch on a whole GoogLeNet."""

    example: InceptionCostExample
    network: InceptionModeComparison

    def to_dict(self) -> dict:
        return dict(self.example.to_dict(), network=self.network.to_dict())

    def render(self) -> str:
        return f"{self.example.render()}\n\n{self.network.render()}"


def inception_cost_summary(network: str = "googlenet") -> InceptionCostSummary:
    """:func:`inception_cost_example` and :func:`naive_vs_bottleneck` on ``network``."""
    return InceptionCostSummary(inception_cost_example(), naive_vs_bottleneck(network))
