"""G5 (GoogLeNet's auxiliary classifiers) and G2's trained part (branch ablation).

At initialisation, every scale: googlenet_small without normalisation (GoogLeNet had no BN
in 2014) and with BN; the gradient norm reaching the lower layers (conv1..3, inception
3a/3b/4a) from the main loss alone and from main + 0.3 x (aux1 + aux2) (Sec. 5), one
forward pass on real training images.

Trained, where the scale trains googlenet_small (``aux_epochs`` > 0), per seed: the BN
network trained twice under identical settings (same seed, data order, schedule), with the
aux losses (weight 0.3) and without (weight 0; the heads exist in both runs, so both start
from the same weights); test accuracy, curves, and after every epoch the gradient reaching
the lower layers from the main loss and from the training loss. With ``aux_no_bn`` the same
pair in the 2014 setting (no BN, Caffe's Xavier init, ``aux_no_bn_lr`` for
``aux_no_bn_epochs``). On the network trained with aux heads,
each branch of each Inception module is ablated at test time (G2).

Negative controls: ``aux-weight-0`` trains and measures both runs with weight 0; random
labels leave the networks at chance (the trained parts are then inconclusive).
"""

from __future__ import annotations

import dataclasses

import torch

from ._seeds import per_seed
from .claims import (
    NOT_TESTED,
    Claim,
    Experiment,
    Part,
    PartResult,
    Rule,
    add_parts,
    every_seed,
    fmt_spread,
    inconclusive,
    not_reproduced,
    register,
    register_experiment,
    reproduced,
    spread,
    verdict_if,
)
from .common import errors, pct, probe_batch

AUX_WEIGHT = 0.3  # Sec. 5
MIN_EXTRA = 1.05  # the aux losses must add at least 5 % to the lower layers' gradient norm
LEARNED = 0.9  # test accuracy at which a googlenet_small counts as trained
RACE_LEARNED = 0.5  # accuracy-2014: a net of the pair learned if every seed is >= max(this, 2 x chance)
TARGET = 0.97  # test accuracy googlenet_small must reach on digits, with and without aux heads
ABLATION_GAP = 0.01  # G2: the most and least costly branches differ by >= 1 point in every seed
ABLATION_MODULES = 5  # G2: ... in at least 5 of the 9 modules


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# --- measuring ---------------------------------------------------------------------------------


def _weight(ctx) -> float:
    return 0.0 if ctx.control == "aux-weight-0" else AUX_WEIGHT


def _googlenet_ctx(ctx, norm: str = "bn"):
    """The context with googlenet_small's recipe (its lr, warm-up and memory format; the 2014
    setting's own lr) in place of the twins'."""
    lr = ctx.scale.aux_no_bn_lr if norm == "none" else ctx.scale.aux_lr
    sc = dataclasses.replace(ctx.scale, lr=lr, warmup_epochs=ctx.scale.aux_warmup_epochs,
                             channels_last=ctx.scale.aux_channels_last)
    return dataclasses.replace(ctx, scale=sc, cache=ctx.cache)


def _run_length(sc, norm: str) -> tuple[int, int]:
    """(epochs, iterations) of one googlenet_small run; iterations > 0 overrides epochs."""
    if sc.aux_iterations:
        return sc.aux_epochs, sc.aux_iterations
    return (sc.aux_no_bn_epochs if norm == "none" else sc.aux_epochs), 0


def init_gradients(ctx, seed: int) -> dict:
    """Lower-layer gradient norms at init, no normalisation and BN, on a real batch."""
    from ..analysis.gradients import lower_layer_gradients
    from ..models import create_model

    ds = ctx.dataset()
    x, y = probe_batch(ds, min(ctx.scale.probe_images, 64), split="train")
    out = {}
    for norm in ("none", "bn"):
        torch.manual_seed(seed)
        net = create_model("googlenet_small", in_chans=ds.in_chans, num_classes=ds.num_classes, norm=norm)
        out[norm] = lower_layer_gradients(net, x, y, aux_weight=_weight(ctx), seed=seed).to_dict()
    return out


def train_pair(ctx, seed: int, norm: str) -> dict:
    """googlenet_small with aux weight 0.3 and 0 (``norm``); per-epoch lower-layer gradients
    of the one trained with aux heads."""
    from ..analysis.gradients import lower_layer_gradients

    sc = ctx.scale
    gctx = _googlenet_ctx(ctx, norm)
    epochs, iterations = _run_length(sc, norm)
    ds = ctx.dataset()
    x, y = probe_batch(ds, min(sc.probe_images, 64), split="train")
    runs = {}

    def on_epoch(net, _record):
        device = next(net.parameters()).device  # the model must stay where it is
        g = lower_layer_gradients(net, x.to(device), y.to(device), aux_weight=_weight(ctx), seed=seed)
        return {"main_only": list(g.main_only), "with_aux": list(g.with_aux)}

    for label, weight in (("with_aux", _weight(ctx)), ("without_aux", 0.0)):
        # the probe measures what the aux losses add to the net trained with them; the net
        # trained without them has nothing for it to measure
        probe = on_epoch if label == "with_aux" else None
        ctx.progress.say(f"training googlenet_small ({norm}) {label.replace('_', ' ')}, seed {seed}, "
                         f"{iterations or epochs} {'steps' if iterations else 'epochs'}")
        length = {"iterations": iterations} if iterations else {}  # else --iterations
        run = gctx.train("googlenet_small", seed=seed, tag=f"googlenet_small-{norm}-{label}",
                         model_kwargs={"norm": norm}, on_epoch=probe, epochs=epochs,
                         batch_size=sc.aux_batch_size, aux_weight=weight, **length)
        last = run.history[-1]
        ctx.progress.say(f"  test accuracy {pct(last['test_acc'])}")
        runs[label] = {"model": run.model, "history": run.history,
                       "gradients": [run.extras[e] for e in sorted(run.extras)],
                       "test_acc": last["test_acc"], "train_acc": last["train_acc"]}
    return runs


def g5_seed(ctx, seed: int) -> dict:
    """One seed of G5 and G2 trained: the init gradients, every trained pair (numbers and
    curves, no models), and the branch ablation of the BN network trained with aux heads."""
    from ..analysis.ablation import branch_ablation, branch_responses

    sc = ctx.scale
    out = {"init": init_gradients(ctx, seed), "trained": {}, "curves": {}}
    if not (sc.aux_epochs or sc.aux_iterations):
        return out
    ds = ctx.dataset()
    xt, yt = probe_batch(ds, len(ds.test_labels), split="test")
    for norm in ("bn", "none") if sc.aux_no_bn else ("bn",):
        runs = train_pair(ctx, seed, norm)
        out["trained"][norm] = {label: {k: r[k] for k in ("test_acc", "train_acc", "gradients")}
                                for label, r in runs.items()}
        out["curves"][norm] = {label: errors(r["history"]) for label, r in runs.items()}
        if norm == "bn":
            ctx.progress.say(f"G2: ablating each branch of each Inception module, seed {seed}")
            net = runs["with_aux"]["model"]
            out["ablation"] = branch_ablation(net, xt, yt).to_dict()
            out["responses"] = branch_responses(net, xt)
    return out


def run(ctx) -> dict:
    ctx.progress.start("aux-heads (G5, G2 trained)")
    ds = ctx.dataset()
    by_seed = per_seed(ctx, g5_seed)
    res = [by_seed[s] for s in ctx.seeds]
    g5 = {"seeds": list(ctx.seeds), "num_classes": ds.num_classes, "aux_weight": _weight(ctx),
          "init": [r["init"] for r in res]}
    g2 = {"seeds": list(ctx.seeds)}
    curves: dict = {}
    for norm in res[0]["trained"]:
        g5[f"trained_{norm}"] = {
            label: {k: [r["trained"][norm][label][k] for r in res]
                    for k in ("test_acc", "train_acc", "gradients")}
            for label in ("with_aux", "without_aux")}
        curves[norm] = {str(s): r["curves"][norm] for s, r in zip(ctx.seeds, res, strict=True)}
    if "ablation" in res[0]:
        g2["ablation"] = [r["ablation"] for r in res]
        g2["responses"] = [r["responses"] for r in res]
    return {"measurements": {"G5": g5, "G2": g2}, "data": {"curves": curves}}


# --- judging -----------------------------------------------------------------------------------


def _layers(m: dict) -> list[str]:
    return list(m["init"][0]["none"]["layers"])


def judge_init(m: dict) -> PartResult:
    """(init) No normalisation, at init: the aux losses add >= 5 % in every seed."""
    ratios = [_mean(s["none"]["ratios"]) for s in m["init"]]
    bn = [_mean(s["bn"]["ratios"]) for s in m["init"]]
    layers = _layers(m)
    stem = [s["none"]["main_only"][0] for s in m["init"]]
    top = [s["none"]["main_only"][-1] for s in m["init"]]
    ok = every_seed(ratios, lambda r: r >= MIN_EXTRA)
    return verdict_if(ok, f"no normalisation, at init: main-loss gradient at {layers[0]} "
                          f"{fmt_spread(stem)} vs {layers[-1]} {fmt_spread(top)}; "
                          f"||grad(main + aux)|| / ||grad(main)|| over {', '.join(layers)}: mean "
                          f"{fmt_spread(ratios, lambda r: f'{r:.4g}')} (needs >= {MIN_EXTRA:g} in every "
                          f"seed: {'yes' if ok else 'no'}); with BN at init: "
                          f"{fmt_spread(bn, lambda r: f'{r:.3f}')}",
                      ratio_none=ratios, ratio_bn=bn)


def _trained(m: dict, norm: str = "bn") -> dict | None:
    return m.get(f"trained_{norm}")


def _not_trained(m: dict, norm: str = "bn") -> PartResult | None:
    if _trained(m, norm) is None:
        what = "the 2014 setting (no BN)" if norm == "none" else "googlenet_small"
        return PartResult(NOT_TESTED, f"{what} is not trained at this scale")
    return None


def _learned(accs, chance: float, bar: float = LEARNED) -> bool:
    return min(accs) >= max(bar, 2 * chance) if chance < 0.5 else min(accs) >= bar


def judge_trained_gradient(m: dict) -> PartResult:
    """(trained-gradient) During training of the BN net, the aux losses add >= 5 % to the
    lower layers' gradient, mean over epochs and layers, in every seed, once it learned."""
    skip = _not_trained(m)
    if skip:
        return skip
    t = _trained(m)["with_aux"]
    chance = 1.0 / m["num_classes"]
    ratios = [_mean(_mean(a / b if b > 0 else float("inf") for a, b in zip(e["with_aux"], e["main_only"], strict=True))
                    for e in per_epoch) for per_epoch in t["gradients"]]
    text = (f"||grad(main + aux)|| / ||grad(main)|| at the lower layers, mean over epochs: "
            f"{fmt_spread(ratios, lambda r: f'{r:.3f}')}; test accuracy with aux {fmt_spread(t['test_acc'], pct)}")
    if not _learned(t["test_acc"], chance):
        return inconclusive(f"the network did not learn (test accuracy below {pct(LEARNED)}): {text}",
                            ratios=ratios)
    ok = every_seed(ratios, lambda r: r >= MIN_EXTRA)
    return verdict_if(ok, f"{text} (needs >= {MIN_EXTRA:g} in every seed: {'yes' if ok else 'no'})",
                      ratios=ratios)


def judge_reaches(m: dict) -> PartResult:
    """(trained-reaches) The BN network reaches >= 97 % test accuracy with and without aux
    heads, in every seed."""
    skip = _not_trained(m)
    if skip:
        return skip
    t = _trained(m)
    accs = {label: t[label]["test_acc"] for label in ("with_aux", "without_aux")}
    ok = all(every_seed(a, lambda x: x >= TARGET) for a in accs.values())
    return verdict_if(ok, f"test accuracy with aux heads {fmt_spread(accs['with_aux'], pct)}, without "
                          f"{fmt_spread(accs['without_aux'], pct)} (needs >= {pct(TARGET)} in every seed: "
                          f"{'yes' if ok else 'no'})", **accs)


def compare_accuracy(m: dict, norm: str, bar: float = LEARNED) -> PartResult:
    """With aux heads above without, beyond the seed spread: reproduced; below beyond it: not
    reproduced; within it: inconclusive (no measurable effect); inconclusive as well when
    neither network reaches ``bar`` in every seed."""
    skip = _not_trained(m, norm)
    if skip:
        return skip
    t = _trained(m, norm)
    w, wo = t["with_aux"]["test_acc"], t["without_aux"]["test_acc"]
    chance = 1.0 / m["num_classes"]
    gaps = [a - b for a, b in zip(w, wo, strict=True)]
    width = max(max(w) - min(w), max(wo) - min(wo))
    gap = _mean(w) - _mean(wo)
    text = (f"test accuracy with aux {fmt_spread(w, pct)} vs without {fmt_spread(wo, pct)}, "
            f"mean gap {100 * gap:+.2f} points, seed spread {100 * width:.2f} points (paper, ImageNet: "
            f"about +0.5)")
    if not (_learned(w, chance, bar) or _learned(wo, chance, bar)):
        return inconclusive(f"neither network learned in the budget (test accuracy >= "
                            f"{pct(max(bar, 2 * chance))} in every seed): {text}", gaps=gaps)
    if len(w) < 2:
        return inconclusive(f"one seed, no spread to compare against: {text}", gaps=gaps)
    if all(g > 0 for g in gaps) and gap > width:
        return reproduced(f"{text}: the aux heads help beyond the spread", gaps=gaps)
    if all(g < 0 for g in gaps) and -gap > width:
        return not_reproduced(f"{text}: the aux heads hurt beyond the spread", gaps=gaps)
    finding = " with BN the aux heads are not needed" if norm == "bn" else ""
    return inconclusive(f"{text}: no difference beyond the seed spread;{finding}", gaps=gaps)


def judge_branches(m: dict) -> PartResult:
    """(G2 trained) The branches are not interchangeable: in >= 5 of 9 modules, the most costly
    branch's accuracy drop exceeds the least costly one's by >= 1 point in every seed."""
    if "ablation" not in m:
        return PartResult(NOT_TESTED, "googlenet_small is not trained at this scale")
    abl = m["ablation"]
    base = [a["base_acc"] for a in abl]
    if min(base) < LEARNED:
        return inconclusive(f"the network did not learn (test accuracy {fmt_spread(base, pct)} < "
                            f"{pct(LEARNED)}): nothing to ablate", base_acc=base)
    if len(abl) < 2:
        return inconclusive("one seed: no seed spread to compare the branches against", base_acc=base)
    modules = list(abl[0]["drop"])
    differ, summary = [], []
    for key in modules:
        mean_drop = {b: _mean(a["drop"][key][b] for a in abl) for b in abl[0]["drop"][key]}
        hi, lo = max(mean_drop, key=mean_drop.get), min(mean_drop, key=mean_drop.get)
        margin = min(a["drop"][key][hi] for a in abl) - max(a["drop"][key][lo] for a in abl)
        if margin >= ABLATION_GAP:
            differ.append(key)
        summary.append(f"{key}: {hi} {100 * mean_drop[hi]:.1f} vs {lo} {100 * mean_drop[lo]:.1f}")
    ok = len(differ) >= ABLATION_MODULES
    return verdict_if(ok, f"accuracy drop (points, mean over seeds) of the most vs least costly branch: "
                          f"{'; '.join(summary)}; apart beyond every seed by >= {100 * ABLATION_GAP:g} "
                          f"point in {len(differ)}/{len(modules)} modules (needs >= {ABLATION_MODULES})",
                      differ=differ)


def _curve_panel(ax, curves: dict, title: str) -> None:
    """Test error per epoch with and without the aux losses, one line per seed."""
    for seed, runs in curves.items():
        for label, color in (("with_aux", "tab:green"), ("without_aux", "tab:gray")):
            err = runs[label]["test_error"]
            ax.plot(range(1, len(err) + 1), [100 * e for e in err], color=color, lw=1,
                    label=f"{label.replace('_', ' ')}" if seed == next(iter(curves)) else None)
    ax.set(xlabel="epoch", ylabel="test error (%)", title=title)
    if curves:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "not trained at this scale", ha="center", transform=ax.transAxes)


def _draw(measured: dict, data: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    from ..report.figures import plt, save_figure

    curves = data.get("aux-heads", {}).get("curves", {})
    panels = [("bn", "googlenet_small (BN)")] + ([("none", "2014 setting (no BN)")] if curves.get("none") else [])
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5 * (len(panels) + 1), 3.8))
    for ax, (norm, title) in zip(axes, panels, strict=False):
        _curve_panel(ax, curves.get(norm, {}), f"{title}, one line per seed")
    ax = axes[-1]
    layers = _layers(measured)
    pos = range(len(layers))
    none = [_mean(s["none"]["ratios"][i] for s in measured["init"]) for i in pos]
    bn = [_mean(s["bn"]["ratios"][i] for s in measured["init"]) for i in pos]
    ax.bar([p - 0.2 for p in pos], none, 0.4, color="tab:green", label="no BN, init")
    ax.bar([p + 0.2 for p in pos], bn, 0.4, color="tab:blue", label="BN, init")
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(pos), layers, rotation=30, fontsize=8)
    ax.set(ylabel="||grad(main+aux)|| / ||grad(main)||", title="extra gradient from the aux losses")
    ax.legend()
    return save_figure(fig, path)


register(Claim(
    "G5", "Auxiliary classifiers on 4a and 4d inject extra gradient into the lower layers; their "
          "losses (weight 0.3) are added in training and dropped at inference.",
    "aux-heads",
    (Part("init-gradient", Rule(1, f"no normalisation, at init: the aux losses add >= "
                                   f"{100 * (MIN_EXTRA - 1):.0f} % to the lower layers' gradient norm "
                                   f"(mean over conv1..inception4a) in every seed", judge_init)),
     Part("trained-gradient", Rule(1, f"trained googlenet_small (BN), after every epoch: the aux losses "
                                      f"add >= {100 * (MIN_EXTRA - 1):.0f} % to the lower layers' gradient "
                                      f"(mean over epochs and layers) in every seed; counted once it "
                                      f"learned (test accuracy >= {pct(LEARNED)})",
                                   judge_trained_gradient), trained=True),
     Part("trained-reaches", Rule(1, f"BN: googlenet_small reaches >= {pct(TARGET)} test accuracy, "
                                     f"with and without aux heads, in every seed", judge_reaches),
          trained=True),
     Part("trained-accuracy", Rule(1, "BN: test accuracy with aux heads above without, in every seed "
                                      "and beyond the seed spread (the opposite: not reproduced; inside "
                                      "the spread: inconclusive)",
                                   lambda m: compare_accuracy(m, "bn")), trained=True),
     Part("accuracy-2014", Rule(2, f"the 2014 setting (no BN, Caffe's Xavier init, bias 0.2): the same "
                                   f"comparison; inconclusive when neither network reaches "
                                   f"{pct(RACE_LEARNED)} (and twice chance) in every seed",
                                lambda m: compare_accuracy(m, "none", RACE_LEARNED),
                                why_changed=f"v1 asked the finished-network bar {pct(LEARNED)} of one of the "
                                            f"two; in a fixed budget the comparison is a race, and a net "
                                            f"far from chance has learned (G4 uses the same "
                                            f"{pct(RACE_LEARNED)} bar). At 12 epochs v1 said inconclusive "
                                            f"for 77.5-88.3 % with aux heads against 20.0-27.2 % without"),
          history=(Rule(1, "the 2014 setting (no BN, Caffe's Xavier init, bias 0.2): the same comparison; "
                           "inconclusive when neither network learns (test accuracy >= "
                           f"{pct(LEARNED)} in every seed)",
                        lambda m: compare_accuracy(m, "none")),), trained=True)),
    figure="g5_aux_heads.png",
    caption="Left: test error of googlenet_small with and without the aux losses, one line per "
            "seed, with BN and (where the scale trains it) in the 2014 setting without BN; look for "
            "whether the green lines sit below the grey ones: with BN they overlap, without BN only "
            "the green ones leave chance early. Right: how much the aux "
            "losses add to the gradient reaching each lower layer at init; look for the tall green "
            "bars (no BN) against bars at 1 (BN).",
    controls=("aux-weight-0", "random-labels"), draw=_draw))

add_parts("G2", Part("trained-ablation", Rule(1, f"trained googlenet_small: zeroing one branch of one "
                                                 f"module at test time; in >= {ABLATION_MODULES} of 9 "
                                                 f"modules the most costly branch's accuracy drop exceeds "
                                                 f"the least costly one's by >= {100 * ABLATION_GAP:g} point "
                                                 f"in every seed (>= 2 seeds)", judge_branches),
                     trained=True, experiment="aux-heads"))

register_experiment(Experiment("aux-heads", run, ("G5", "G2"), order=50,
                               summary="G5 and G2 trained: googlenet_small with and without aux "
                                       "heads, branch ablation"))

__all__ = ["compare_accuracy", "g5_seed", "judge_branches", "judge_init", "judge_reaches",
           "judge_trained_gradient", "run", "spread"]
