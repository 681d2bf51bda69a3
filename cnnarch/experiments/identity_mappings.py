"""B1: identity mappings (He, Zhang, Ren and Sun 2016, "Identity Mappings in Deep Residual
Networks"): with nothing after the addition, dL/dx_l = dL/dx_L (1 + d/dx_l sum F) (Eq. 5).

Every scale, at initialisation (BN statistics calibrated on real images), per seed:
(jacobian) ||(J - I) v - (dF/dx) v|| / ||(dF/dx) v|| on the first identity blocks
  (``analysis/identity_mappings.py``): 0 to rounding in the pre-activation ResNet-56, not 0
  in the original ResNet-56 (its ReLU after the addition);
(gradient) the head->stem gradient factor ||dL/dx_0|| / ||dL/dx_L|| of pre-activation and
  original ResNet-56 and -110.
Where the scale trains them (``preact_trained``), per seed with the twins' recipe:
(gradient-trained) the head->stem factor of the trained pre-activation ResNet-56, beside
  the original ResNet-56 of the twins (same recipe, same seed);
(shortcut-ablation) the paper's Table 1 on pre-activation ResNet-20 (identity vs constant
  scaling 0.5 vs 1x1 convolution on every identity shortcut); final training error.
"""

from __future__ import annotations

import torch

from ._seeds import per_seed
from .claims import (
    NOT_TESTED,
    Claim,
    Experiment,
    Part,
    PartResult,
    Rule,
    fmt_spread,
    inconclusive,
    not_reproduced,
    register,
    register_experiment,
    reproduced,
    verdict_if,
)
from .common import pct, probe_batch

EXACT = 1e-4  # relative gap below which J - I equals dF/dx (float32 rounding)
NOT_EXACT = 0.01  # relative gap above which it does not
GRAD_LOW = 1.0  # the gradient does not shrink from head to stem (Eq. 5's additive term)
DEPTHS = (56, 110)
TRAINED_DEPTH = 56  # after training: pre-activation vs original ResNet-56 (110 costs 2x more)
LEARNED_FRACTION = 0.5  # a network learned if its test error < half the chance error
SHORTCUTS = ("identity", "scale", "conv")  # Table 1 rows: original, constant scaling, 1x1 conv


def _init(name: str, ds, x, seed: int, **kwargs):
    from ..analysis.gradients import calibrate_bn
    from ..models import create_model

    torch.manual_seed(seed)
    net = create_model(name, in_chans=ds.in_chans, num_classes=ds.num_classes, **kwargs)
    return net, calibrate_bn(net, x)


def run(ctx) -> dict:
    from ..analysis.identity_mappings import block_jacobian_gaps, head_to_stem_factor

    sc = ctx.scale
    ctx.progress.start("identity mappings (B1)")
    ds = ctx.dataset()
    x, y = probe_batch(ds, min(sc.probe_images, 128), split="train")
    jx = x[:8]
    m = {"seeds": list(ctx.seeds), "num_classes": ds.num_classes, "gaps": [], "factors": [],
         "ablation": None, "trained": None}
    for seed in ctx.seeds:
        gaps, factors = {}, {}
        for name in ("preact_resnet56", "resnet56"):
            _, calibrated = _init(name, ds, x, seed)
            gaps[name] = block_jacobian_gaps(calibrated, jx, max_blocks=sc.jacobian_blocks, seed=seed)
        _, scaled = _init("preact_resnet20", ds, x, seed, identity_shortcut="scale")
        gaps["preact_resnet20_scale"] = block_jacobian_gaps(scaled, jx, max_blocks=sc.jacobian_blocks, seed=seed)
        for depth in DEPTHS:
            for name in (f"preact_resnet{depth}", f"resnet{depth}"):
                net, _ = _init(name, ds, x, seed)
                factors[name] = head_to_stem_factor(net, x, y)
        m["gaps"].append(gaps)
        m["factors"].append(factors)
        ctx.progress.say(f"  seed {seed}: Jacobian gaps {({k: max(v) for k, v in gaps.items()})}, "
                         f"head->stem factors {factors}")
    if sc.preact_trained:
        by_seed = per_seed(ctx, b1_trained_seed)
        res = [by_seed[s] for s in ctx.seeds]
        m["ablation"] = {k: [r["ablation"][k] for r in res] for k in SHORTCUTS}
        m["trained"] = _trained_factors(ctx, res, x, y)
    return {"measurements": {"B1": m}, "data": {}}


def b1_trained_seed(ctx, seed: int) -> dict:
    """One seed, the twins' recipe: pre-activation ResNet-20 with each shortcut of Table 1
    (final training error), and pre-activation ResNet-56 (its head->stem factor after training
    and its final test error)."""
    from ..analysis.identity_mappings import head_to_stem_factor

    ds = ctx.dataset()
    x, y = probe_batch(ds, min(ctx.scale.probe_images, 128), split="train")
    ablation = {}
    for kind in SHORTCUTS:
        ctx.progress.say(f"training preact_resnet20 with {kind} shortcuts, seed {seed}")
        run_ = ctx.train("preact_resnet20", seed=seed, tag=f"preact20-{kind}",
                         model_kwargs={"identity_shortcut": kind})
        ablation[kind] = 1.0 - run_.history[-1]["train_acc"]
    ctx.progress.say(f"training preact_resnet56, seed {seed}")
    pre = ctx.train(f"preact_resnet{TRAINED_DEPTH}", seed=seed, tag=f"preact{TRAINED_DEPTH}")
    return {"ablation": ablation,
            "preact_factor": head_to_stem_factor(pre.model, x, y),
            "preact_test_error": 1.0 - pre.history[-1]["test_acc"]}


def _trained_factors(ctx, res: list[dict], x, y) -> dict:
    """Head->stem factors after training: pre-activation ResNet-56 (trained per seed above)
    beside the original ResNet-56 of the twins, where the twins include that depth."""
    from ..analysis.identity_mappings import head_to_stem_factor

    out = {"depth": TRAINED_DEPTH, "preact": [r["preact_factor"] for r in res],
           "preact_test_error": [r["preact_test_error"] for r in res], "original": None,
           "original_test_error": None}
    if TRAINED_DEPTH in ctx.depths():
        twins = [ctx.twins(s)["runs"][f"resnet{TRAINED_DEPTH}"] for s in ctx.seeds]
        out["original"] = [head_to_stem_factor(t["model"], x, y) for t in twins]
        out["original_test_error"] = [1.0 - t["history"][-1]["test_acc"] for t in twins]
    return out


def judge_jacobian(m: dict) -> PartResult:
    pre = [max(g["preact_resnet56"]) for g in m["gaps"]]
    orig = [min(g["resnet56"]) for g in m["gaps"]]
    ok_pre = all(v <= EXACT for v in pre)
    ok_orig = all(v >= NOT_EXACT for v in orig)
    scaled = [min(g["preact_resnet20_scale"]) for g in m["gaps"]]
    return verdict_if(ok_pre and ok_orig,
                      f"||(J - I)v - (dF/dx)v|| / ||(dF/dx)v||: pre-activation ResNet-56 largest "
                      f"{fmt_spread(pre, lambda v: f'{v:.1e}')} (exact, <= {EXACT:g}: {'yes' if ok_pre else 'no'}); "
                      f"original ResNet-56 smallest {fmt_spread(orig, lambda v: f'{v:.3f}')} (not exact, >= "
                      f"{NOT_EXACT:g}: {'yes' if ok_orig else 'no'}); for reference, the constant-scaling "
                      f"shortcut (0.5 x) {fmt_spread(scaled, lambda v: f'{v:.3f}')}",
                      preact=pre, original=orig)


def judge_gradient(m: dict) -> PartResult:
    parts, ok = [], True
    for depth in DEPTHS:
        pre = [f[f"preact_resnet{depth}"] for f in m["factors"]]
        orig = [f[f"resnet{depth}"] for f in m["factors"]]
        hold = all(v >= GRAD_LOW for v in pre)
        ok = ok and hold
        parts.append(f"{depth} layers: pre-activation {fmt_spread(pre, lambda v: f'{v:.3g}x')} "
                     f"(>= {GRAD_LOW:g}: {'yes' if hold else 'no'}), original {fmt_spread(orig, lambda v: f'{v:.3g}x')}")
    return verdict_if(ok, "head->stem gradient factor at init (BN batch statistics): " + "; ".join(parts)
                          + ". The gradient grows toward the stem in both designs with BN; the identity "
                            "path keeps it from vanishing")


def judge_trained_gradient(m: dict) -> PartResult:
    t = m.get("trained")
    if not t:
        return PartResult(NOT_TESTED, "the pre-activation ResNet-56 is not trained at this scale")
    d, pre = t["depth"], t["preact"]
    chance_error = 1.0 - 1.0 / m["num_classes"]
    err = t["preact_test_error"]
    text = (f"after training, head->stem gradient factor: pre-activation ResNet-{d} "
            f"{fmt_spread(pre, lambda v: f'{v:.3g}x')} (test error {fmt_spread(err, pct)})")
    if t.get("original"):
        orig = t["original"]
        above = sum(a > b for a, b in zip(pre, orig, strict=True))
        text += (f", original ResNet-{d} {fmt_spread(orig, lambda v: f'{v:.3g}x')} (test error "
                 f"{fmt_spread(t['original_test_error'], pct)}; pre-activation larger in {above}/{len(pre)} seeds)")
    if not all(e < LEARNED_FRACTION * chance_error for e in err):
        return inconclusive(f"the pre-activation network did not learn: {text}", preact=pre)
    ok = all(v >= GRAD_LOW for v in pre)
    return verdict_if(ok, f"{text}; pre-activation >= {GRAD_LOW:g} in every seed: {'yes' if ok else 'no'}",
                      preact=pre)


def judge_ablation(m: dict) -> PartResult:
    ab = m.get("ablation")
    if not ab:
        return PartResult(NOT_TESTED, "the shortcut variants are not trained at this scale")
    ident = ab["identity"]
    text = "; ".join(f"{k} {fmt_spread(v, pct)}" for k, v in ab.items())
    if min(ident) > 0.5:
        return inconclusive(f"the identity network did not learn: final training error {text}")
    if len(ident) < 2:
        return inconclusive(f"one seed, no spread: final training error {text}")
    verdicts, phrases = [], {"worse": "worse than identity beyond the seed spread",
                             "better": "better than identity beyond the seed spread",
                             "within": "within the seed spread of identity"}
    for other in ("scale", "conv"):
        o = ab[other]
        width = max(max(ident) - min(ident), max(o) - min(o))
        gap = sum(o) / len(o) - sum(ident) / len(ident)
        if all(a < b for a, b in zip(ident, o, strict=True)) and gap > width:
            verdicts.append("worse")
        elif all(a > b for a, b in zip(ident, o, strict=True)) and -gap > width:
            verdicts.append("better")
        else:
            verdicts.append("within")
    text = (f"pre-activation ResNet-20, final training error: {text}; scaling 0.5: "
            f"{phrases[verdicts[0]]}; 1x1 conv: {phrases[verdicts[1]]} (paper, 110 layers, test "
            f"error: identity 6.61 %, scaling 0.5 12.35 %, 1x1 conv 12.22 %)")
    if verdicts == ["worse", "worse"]:
        return reproduced(text)
    if "better" in verdicts:
        return not_reproduced(text)
    return inconclusive(text)


def _draw(measured: dict, data: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    from ..report.figures import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    names = ("preact_resnet56", "resnet56", "preact_resnet20_scale")
    labels = ("pre-act ResNet-56", "original ResNet-56", "pre-act, 0.5 x shortcut")
    for j, g in enumerate(measured["gaps"]):
        for k, (n, lab) in enumerate(zip(names, labels, strict=True)):
            axes[0].plot(range(1, len(g[n]) + 1), [max(v, 1e-9) for v in g[n]], "o-", ms=3, lw=0.8,
                         color=f"C{k}", label=lab if j == 0 else None)
    axes[0].set_yscale("log")
    axes[0].set(xlabel="identity block", ylabel="rel. gap |(J - I)v - J_F v| / |J_F v|",
                title="is J = I + dF/dx? (1e-9 = exactly 0)")
    axes[0].legend(fontsize=8)
    ax = axes[1]
    keys = [f"{p}{d}" for d in DEPTHS for p in ("preact_resnet", "resnet")]
    for f in measured["factors"]:
        ax.scatter(range(len(keys)), [f[k] for k in keys], color="tab:blue", s=12)
    ax.set_xticks(range(len(keys)), [k.replace("preact_resnet", "pre-act ").replace("resnet", "orig ") for k in keys])
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(ylabel="head->stem gradient factor", title="at init, one dot per seed")
    return save_figure(fig, path)


register(Claim(
    "B1", "With identity shortcuts and nothing after the addition (pre-activation), dL/dx_l = dL/dx_L "
          "(1 + dF/dx_l) holds exactly, so the gradient reaches every unit; shortcuts that are not the "
          "identity train worse (He et al. 2016).",
    "identity-mappings",
    (Part("jacobian", Rule(1, f"at init, every seed: J - I equals dF/dx in the pre-activation ResNet-56's "
                              f"identity blocks (relative gap <= {EXACT:g}) and not in the original "
                              f"ResNet-56's (>= {NOT_EXACT:g})", judge_jacobian)),
     Part("gradient", Rule(1, f"at init, every seed: the head->stem gradient factor of pre-activation "
                              f"ResNet-56 and -110 is >= {GRAD_LOW:g} (the gradient does not vanish)",
                           judge_gradient)),
     Part("gradient-trained", Rule(1, f"after training (twins' recipe), every seed: the head->stem "
                                      f"gradient factor of pre-activation ResNet-{TRAINED_DEPTH} is >= "
                                      f"{GRAD_LOW:g} (the original ResNet-{TRAINED_DEPTH}'s reported beside); "
                                      f"inconclusive if it did not learn", judge_trained_gradient),
          trained=True),
     Part("shortcut-ablation", Rule(1, "pre-activation ResNet-20: both the constant-scaling (0.5) and the "
                                       "1x1-conv shortcut end at a higher training error than the "
                                       "identity, in every seed and beyond the seed spread",
                                    judge_ablation), trained=True)),
    figure="b1_identity.png",
    caption="Left: how far J - I is from dF/dx in each identity block; look for the pre-activation "
            "blocks at the bottom (exactly 0) and the original blocks far above. Right: the gradient's "
            "growth from head to stem at init; look for every dot at or above 1.",
    controls=("random-labels",), draw=_draw))

register_experiment(Experiment("identity-mappings", run, ("B1",), order=46,
                               summary="B1: pre-activation ResNets, exact Jacobian, shortcut ablation"))
