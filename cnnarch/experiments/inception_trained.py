"""G4 trained: "1x1 layers may lose information but add non-linearity" (Szegedy et al. 2014,
Sec. 4 and Fig. 2).

googlenet_small (BN, aux heads weight 0.3, googlenet_small's recipe) trained three ways at
equal steps, with the same seed, data order and schedule (and the same peak lr, unless the
scale gives the naive variant its own, ``inception_naive_lr``: its classifier reads ~5x more
channels, and the shared lr can blow it up in its first epoch):

- ``bottleneck`` (Fig. 2b, the paper): 1x1 reductions followed by ReLU before the 3x3 and
  5x5 convolutions and after the pool;
- ``linear``: the same 1x1 reductions without their ReLU (``inception="linear"``): the
  reduction, without the non-linearity it adds;
- ``naive`` (Fig. 2a): no reduction (``inception="naive"``).

Per seed: final test and training accuracy of each; multiply-adds per image counted on our
modules (``analysis/complexity.py``, inference network, the data set's image size). A scale
may train fewer variants (``inception_variants``); a rule whose pair was not trained is not
tested.

Rules (version 1, fixed before measuring), over >= 2 seeds, judged once a variant learned
(mean test accuracy >= max(50 %, 2 x chance)):
(cost-accuracy) the bottleneck network costs >= 2x fewer multiply-adds than the naive one and
  its test accuracy is within the seed spread of the naive one's or above it; below it in
  every seed and beyond the spread: not reproduced (the reduction lost information that
  mattered);
(non-linearity) the bottleneck network's test accuracy is above the linear one's in every
  seed and beyond the seed spread: reproduced; the opposite: not reproduced; inside the
  spread: inconclusive (the ReLU after the reduction made no measurable difference).

Where the scale sets ``inception_linear_longer``, the non-linearity comparison runs once more
at G5's run length (``trained-nonlinearity-longer``), where one cheap pair can afford what the
three-way race cannot (the naive variant costs ~10x per step): the bottleneck arm is G5's BN
network trained with aux heads (the ``aux-heads`` experiment's run, which this one reuses or
trains), the linear arm the same network with ``inception="linear"``, trained with the same
recipe, seed and data order. The two have the same parameter shapes, so a seed gives them
the same initial weights. Same rule as trained-nonlinearity.
"""

from __future__ import annotations

import dataclasses

from ._seeds import per_seed
from .claims import (
    NOT_TESTED,
    Experiment,
    Part,
    PartResult,
    Rule,
    add_parts,
    fmt_spread,
    inconclusive,
    not_reproduced,
    register_experiment,
    reproduced,
)
from .common import pct

VARIANTS = ("bottleneck", "linear", "naive")  # Fig. 2b, Fig. 2b without the 1x1s' ReLU, Fig. 2a
MIN_SAVING = 2.0  # the bottleneck must cost at least 2x fewer multiply-adds than naive
LEARNED = 0.5  # a variant learned if its mean test accuracy >= max(this, 2 x chance)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# --- measuring ---------------------------------------------------------------------------------


def g4_seed(ctx, seed: int) -> dict:
    """Train the scale's variants for ``inception_ablation_epochs`` each (equal steps)."""
    from .aux_heads import _googlenet_ctx, _weight

    sc = ctx.scale
    gctx = _googlenet_ctx(ctx)
    batch = sc.inception_ablation_batch_size or sc.aux_batch_size
    out = {}
    for mode in sc.inception_variants:
        lr = variant_lr(gctx.scale, mode)
        ctx.progress.say(f"training googlenet_small ({mode} modules), seed {seed}, "
                         f"{sc.inception_ablation_epochs} epochs at batch {batch}, lr {lr:g}")
        vctx = gctx if lr == gctx.scale.lr else dataclasses.replace(
            gctx, scale=dataclasses.replace(gctx.scale, lr=lr), cache=gctx.cache)
        tag = f"googlenet_small-{mode}-g4" + ("" if vctx is gctx else f"-lr{lr:g}")
        run = vctx.train("googlenet_small", seed=seed, tag=tag,
                         model_kwargs={"inception": mode}, epochs=sc.inception_ablation_epochs,
                         batch_size=batch, aux_weight=_weight(ctx))
        last = run.history[-1]
        ctx.progress.say(f"  test accuracy {pct(last['test_acc'])}")
        out[mode] = {"test_acc": last["test_acc"], "train_acc": last["train_acc"],
                     "steps": last.get("step"), "lr": lr,
                     "test_error": [1.0 - h["test_acc"] for h in run.history]}
    return out


def variant_lr(sc, mode: str) -> float:
    """The peak lr ``mode`` trains at in G4's race (``sc``: the scale with googlenet_small's lr)."""
    return sc.inception_naive_lr if mode == "naive" and sc.inception_naive_lr else sc.lr


def g4_longer_seed(ctx, seed: int) -> dict:
    """The linear variant trained with G5's recipe and run length (batch, lr, aux weight)."""
    from .aux_heads import _googlenet_ctx, _run_length, _weight

    sc = ctx.scale
    epochs, iterations = _run_length(sc, "bn")
    length = {"iterations": iterations} if iterations else {}
    ctx.progress.say(f"training googlenet_small (linear modules), seed {seed}, G5's run length: "
                     f"{iterations or epochs} {'steps' if iterations else 'epochs'} "
                     f"at batch {sc.aux_batch_size}")
    run = _googlenet_ctx(ctx).train("googlenet_small", seed=seed, tag="googlenet_small-linear-g5",
                                    model_kwargs={"inception": "linear"}, epochs=epochs,
                                    batch_size=sc.aux_batch_size, aux_weight=_weight(ctx), **length)
    last = run.history[-1]
    ctx.progress.say(f"  test accuracy {pct(last['test_acc'])}")
    return {"test_acc": last["test_acc"], "train_acc": last["train_acc"], "steps": last.get("step")}


def longer(ctx) -> dict:
    """Bottleneck (G5's BN run with aux heads) vs linear at G5's run length, per seed."""
    from . import aux_heads

    g5 = per_seed(ctx, aux_heads.g5_seed)
    lin = per_seed(ctx, g4_longer_seed)
    bottleneck = [g5[s]["trained"]["bn"]["with_aux"] for s in ctx.seeds]
    linear = [lin[s] for s in ctx.seeds]
    sc = ctx.scale
    return {"seeds": list(ctx.seeds), "epochs": sc.aux_epochs, "iterations": sc.aux_iterations,
            "batch_size": sc.aux_batch_size, "steps": linear[0]["steps"],
            "test_acc": {"bottleneck": [r["test_acc"] for r in bottleneck],
                         "linear": [r["test_acc"] for r in linear]},
            "train_acc": {"bottleneck": [r["train_acc"] for r in bottleneck],
                          "linear": [r["train_acc"] for r in linear]}}


def run(ctx) -> dict:
    from ..analysis.complexity import complexity

    sc = ctx.scale
    ctx.progress.start("inception-trained (G4 trained)")
    if not sc.inception_ablation_epochs:
        return {"measurements": {"G4": {"trained": None}}, "data": {}}
    ds = ctx.dataset()
    c, (h, w) = ds.in_chans, ds.image_size
    macs = {mode: complexity("googlenet_small", (c, h, w), in_chans=c, num_classes=ds.num_classes,
                             inception=mode).macs for mode in VARIANTS}
    by_seed = per_seed(ctx, g4_seed)
    res = [by_seed[s] for s in ctx.seeds]
    modes = [m for m in VARIANTS if m in sc.inception_variants]
    batch = sc.inception_ablation_batch_size or sc.aux_batch_size
    steps = res[0][modes[0]]["steps"]
    trained = {"seeds": list(ctx.seeds), "num_classes": ds.num_classes, "macs": macs,
               "epochs": sc.inception_ablation_epochs, "batch_size": batch, "steps": steps,
               "run_length": run_length(sc.inception_ablation_epochs, batch, steps),
               "lr": {m: res[0][m]["lr"] for m in modes},  # as trained (the same in every seed)
               "test_acc": {m: [r[m]["test_acc"] for r in res] for m in modes},
               "train_acc": {m: [r[m]["train_acc"] for r in res] for m in modes},
               "test_error_curves": {m: [r[m]["test_error"] for r in res] for m in modes}}
    if sc.inception_linear_longer and (sc.aux_epochs or sc.aux_iterations):
        trained["longer"] = longer(ctx)
    return {"measurements": {"G4": {"trained": trained}}, "data": {}}


def run_length(epochs: int, batch: int, steps: int | None) -> str:
    """'1 epoch at batch 32 (44 steps)': how long each variant trained."""
    text = f"{epochs} epoch{'' if epochs == 1 else 's'} at batch {batch}"
    return f"{text} ({steps} steps)" if steps else text


# --- judging -----------------------------------------------------------------------------------


def ordering(a: list[float], b: list[float]) -> tuple[str, float, float]:
    """'above' when a > b in every seed (paired) and the gap of the means exceeds the seed
    spread (the larger min-max range of the two), 'below' for the opposite, else 'within';
    with the gap of the means and the spread."""
    width = max(max(a) - min(a), max(b) - min(b))
    gap = _mean(a) - _mean(b)
    if all(x > y for x, y in zip(a, b, strict=True)) and gap > width:
        return "above", gap, width
    if all(x < y for x, y in zip(a, b, strict=True)) and -gap > width:
        return "below", gap, width
    return "within", gap, width


def _learned(accs: list[float], num_classes: int) -> bool:
    return _mean(accs) >= max(LEARNED, 2.0 / num_classes)


def _precheck(m: dict, pair: tuple[str, str]) -> PartResult | tuple[dict, str]:
    t = m.get("trained")
    if not t:
        return PartResult(NOT_TESTED, "the three module variants are not trained at this scale")
    acc = t["test_acc"]
    missing = [v for v in pair if v not in acc]
    if missing:
        return PartResult(NOT_TESTED, f"the {' and '.join(missing)} variant is not trained at this scale "
                                      f"(it costs {t['macs'][missing[0]] / 1e6:.1f}M MACs per image)")
    text = "; ".join(f"{v} {fmt_spread(acc[v], pct)} at {t['macs'][v] / 1e6:.1f}M MACs" for v in acc)
    length = t.get("run_length") or f"{t['epochs']} epochs"
    text = f"test accuracy after {length} each (equal steps{_lrs(t.get('lr', {}))}): {text}"
    refused = _not_comparable(acc, pair, t["num_classes"], text)
    return refused if refused is not None else (t, text)


def _lrs(lrs: dict) -> str:
    """', peak lr 0.1 (naive 0.01)' where the variants' lrs differ, ', peak lr 0.1' else."""
    if not lrs:
        return ""
    shared = lrs.get("bottleneck", next(iter(lrs.values())))
    own = [f"{m} {lr:g}" for m, lr in lrs.items() if lr != shared]
    return f", peak lr {shared:g}" + (f" ({', '.join(own)})" if own else "")


def _not_comparable(acc: dict, pair: tuple[str, str], num_classes: int, text: str) -> PartResult | None:
    """Inconclusive when neither of ``pair`` learned or there is one seed only; else None."""
    if not any(_learned(acc[v], num_classes) for v in pair):
        return inconclusive(f"neither {pair[0]} nor {pair[1]} learned (mean test accuracy below "
                            f"{pct(max(LEARNED, 2.0 / num_classes))}): {text}")
    if len(acc[pair[0]]) < 2:
        return inconclusive(f"one seed, no spread to compare against: {text}")
    return None


def judge_cost_accuracy(m: dict) -> PartResult:
    pre = _precheck(m, ("bottleneck", "naive"))
    if isinstance(pre, PartResult):
        return pre
    t, text = pre
    saving = t["macs"]["naive"] / t["macs"]["bottleneck"]
    order, gap, width = ordering(t["test_acc"]["bottleneck"], t["test_acc"]["naive"])
    text += (f"; bottleneck vs naive: {saving:.1f}x fewer MACs (needs >= {MIN_SAVING:g}x), accuracy "
             f"gap {100 * gap:+.2f} points, seed spread {100 * width:.2f} points")
    if saving < MIN_SAVING:
        return not_reproduced(f"{text}: the reduction does not save enough", saving=saving, gap=gap)
    if order == "below":
        return not_reproduced(f"{text}: the reduction costs accuracy beyond the seed spread",
                              saving=saving, gap=gap)
    where = "above naive beyond" if order == "above" else "within"
    return reproduced(f"{text}: {where} the seed spread at {saving:.1f}x fewer MACs", saving=saving, gap=gap)


def judge_nonlinearity(m: dict) -> PartResult:
    pre = _precheck(m, ("bottleneck", "linear"))
    if isinstance(pre, PartResult):
        return pre
    t, text = pre
    return _bottleneck_vs_linear(f"{text}; bottleneck (1x1 + ReLU) vs linear (1x1 alone)",
                                 t["test_acc"]["bottleneck"], t["test_acc"]["linear"])


def _bottleneck_vs_linear(text: str, bottleneck: list[float], linear: list[float]) -> PartResult:
    """The non-linearity rule on one pair of per-seed accuracies."""
    order, gap, width = ordering(bottleneck, linear)
    text += f": gap {100 * gap:+.2f} points, seed spread {100 * width:.2f} points"
    if order == "above":
        return reproduced(f"{text}: the ReLU after the reduction helps beyond the spread", gap=gap)
    if order == "below":
        return not_reproduced(f"{text}: the linear reduction is better beyond the spread", gap=gap)
    return inconclusive(f"{text}: no difference beyond the seed spread", gap=gap)


def judge_nonlinearity_longer(m: dict) -> PartResult:
    t = m.get("trained")
    lg = (t or {}).get("longer")
    if not lg:
        return PartResult(NOT_TESTED, "the linear variant is not trained at G5's run length "
                                      "at this scale")
    acc = lg["test_acc"]
    length = f"{lg['iterations']} steps" if lg["iterations"] else f"{lg['epochs']} epochs"
    text = (f"test accuracy after G5's run length ({length} at batch {lg['batch_size']}, equal "
            f"steps): bottleneck {fmt_spread(acc['bottleneck'], pct)}, linear "
            f"{fmt_spread(acc['linear'], pct)}")
    refused = _not_comparable(acc, ("bottleneck", "linear"), t["num_classes"], text)
    if refused is not None:
        return refused
    return _bottleneck_vs_linear(text, acc["bottleneck"], acc["linear"])


add_parts(
    "G4",
    Part("trained-cost-accuracy",
         Rule(1, f"googlenet_small, bottleneck vs naive modules trained at equal steps (>= 2 seeds): "
                 f">= {MIN_SAVING:g}x fewer multiply-adds and test accuracy within the naive one's seed "
                 f"spread or above it (below it in every seed beyond the spread: not reproduced); "
                 f"inconclusive when neither learned", judge_cost_accuracy),
         trained=True, experiment="inception-trained"),
    Part("trained-nonlinearity",
         Rule(1, "googlenet_small, bottleneck (1x1 + ReLU) vs linear (1x1 without ReLU) at equal steps: "
                 "bottleneck above in every seed and beyond the seed spread = reproduced; the opposite = "
                 "not reproduced; inside the spread = inconclusive", judge_nonlinearity),
         trained=True, experiment="inception-trained"),
    Part("trained-nonlinearity-longer",
         Rule(1, "the same comparison at G5's run length: G5's BN googlenet_small with aux heads "
                 "(bottleneck) vs the same network with linear reductions, same recipe, seeds and data "
                 "order: bottleneck above in every seed and beyond the seed spread = reproduced; the "
                 "opposite = not reproduced; inside the spread = inconclusive; inconclusive when "
                 "neither learned", judge_nonlinearity_longer),
         trained=True, experiment="inception-trained"))

register_experiment(Experiment("inception-trained", run, ("G4",), order=55,
                               summary="G4 trained: bottleneck, linear and (at full) naive modules at equal steps"))
