"""B2: residual networks behave like ensembles of shallow networks (Veit et al. 2016).

On the degradation experiment's trained twins (``ctx.twins(seed)``, every seed): delete one
block at a time at test time from ResNet-N and from plain-N (N the deepest twin depth), and
k = 1..``lesion_max_removed`` random blocks at once (``lesion_subsets`` random sets per k);
error on the first ``probe_images`` test images for each (``analysis/lesions.py``).

Rule (fixed before measuring, version 1), every seed:
(single) in the ResNet, deleting one non-downsampling block raises the test error by at most
  5 points (median over blocks), while in the plain twin the median error after one deletion
  is at least chance minus 10 points (it collapses; counted only where the plain net learned);
(smooth) in the ResNet the error grows gradually with the number deleted: no single added
  deletion raises the mean error by more than 15 points.
"""

from __future__ import annotations

from statistics import median

from .claims import (
    Claim,
    Experiment,
    Part,
    PartResult,
    Rule,
    fmt_spread,
    inconclusive,
    register,
    register_experiment,
    verdict_if,
)
from .common import pct, probe_batch

SINGLE_MAX = 0.05  # ResNet: median error increase from one deletion
COLLAPSE_MARGIN = 0.10  # plain: median error after one deletion >= chance error - this
STEP_MAX = 0.15  # ResNet: largest rise of the mean error from k to k + 1 deletions
LEARNED_FRACTION = 0.5  # a network learned if its test error < half the chance error


def run(ctx) -> dict:
    from ..analysis.lesions import lesion_study

    sc = ctx.scale
    ctx.progress.start("lesions (B2)")
    ds = ctx.dataset()
    x, y = probe_batch(ds, min(sc.probe_images, len(ds.test_labels)), split="test")
    depth = max(ctx.depths())
    per_seed = {"resnet": [], "plain": []}
    for seed in ctx.seeds:
        runs = ctx.twins(seed)["runs"]
        for kind in ("resnet", "plain"):
            ctx.progress.say(f"lesion study: {kind}-{depth}, seed {seed}")
            res = lesion_study(runs[f"{kind}{depth}"]["model"], x, y, max_removed=sc.lesion_max_removed,
                               subsets=sc.lesion_subsets, seed=seed)
            per_seed[kind].append(res.to_dict())
    m = {"seeds": list(ctx.seeds), "depth": depth, "num_classes": ds.num_classes, **per_seed}
    return {"measurements": {"B2": m}, "data": {}}


def _chance_error(m: dict) -> float:
    return 1.0 - 1.0 / m["num_classes"]


def _learned(r: dict, m: dict) -> bool:
    return r["base_error"] < LEARNED_FRACTION * _chance_error(m)


def _median_increase(r: dict) -> float:
    return median(r["single"][str(i)] - r["base_error"] for i in r["removable"])


def judge_single(m: dict) -> PartResult:
    res, plain = m["resnet"], m["plain"]
    d = m["depth"]
    if not all(_learned(r, m) for r in res):
        return inconclusive(f"ResNet-{d} did not learn (test error {fmt_spread([r['base_error'] for r in res], pct)})")
    inc = [_median_increase(r) for r in res]
    res_ok = all(i <= SINGLE_MAX for i in inc)
    text = (f"ResNet-{d}: test error {fmt_spread([r['base_error'] for r in res], pct)}, median rise from "
            f"deleting one block {fmt_spread(inc, pct)} (needs <= {pct(SINGLE_MAX)}: {'yes' if res_ok else 'no'})")
    plain_learned = [r for r in plain if _learned(r, m)]
    if not plain_learned:
        return inconclusive(f"{text}; plain-{d} did not learn (test error "
                            f"{fmt_spread([r['base_error'] for r in plain], pct)}), so its collapse cannot "
                            f"be judged", resnet_increase=inc)
    after = [median(r["single"][str(i)] for i in r["removable"]) for r in plain_learned]
    floor = _chance_error(m) - COLLAPSE_MARGIN
    plain_ok = all(a >= floor for a in after)
    text += (f"; plain-{d} ({len(plain_learned)}/{len(plain)} seeds learned): test error "
             f"{fmt_spread([r['base_error'] for r in plain_learned], pct)}, median after deleting one block "
             f"{fmt_spread(after, pct)} (collapse to >= {pct(floor)}: {'yes' if plain_ok else 'no'})")
    return verdict_if(res_ok and plain_ok, text, resnet_increase=inc, plain_after=after)


def judge_smooth(m: dict) -> PartResult:
    res, d = m["resnet"], m["depth"]
    if not all(_learned(r, m) for r in res):
        return inconclusive(f"ResNet-{d} did not learn")
    steps = []
    for r in res:
        errs = [r["by_count"][str(k)] for k in sorted(map(int, r["by_count"]))]
        steps.append(max(b - a for a, b in zip(errs, errs[1:], strict=False)) if len(errs) > 1 else 0.0)
    kmax = max(max(map(int, r["by_count"])) for r in res)
    top = [r["by_count"][str(kmax)] for r in res]
    ok = all(s <= STEP_MAX for s in steps)
    return verdict_if(ok, f"ResNet-{d}: error with {kmax} blocks deleted {fmt_spread(top, pct)}; largest "
                          f"rise from one more deletion {fmt_spread(steps, pct)} (needs <= {pct(STEP_MAX)} "
                          f"in every seed: {'yes' if ok else 'no'})", largest_step=steps)


def _draw(measured: dict, data: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    from ..report.figures import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    d = measured["depth"]
    for kind, color in (("resnet", "tab:blue"), ("plain", "tab:red")):
        for j, r in enumerate(measured[kind]):
            idx = list(r["removable"])
            axes[0].plot(idx, [100 * r["single"][str(i)] for i in idx], "o-", ms=3, lw=0.8, color=color,
                         label=f"{'ResNet' if kind == 'resnet' else 'plain'}-{d}" if j == 0 else None)
            ks = sorted(map(int, r["by_count"]))
            axes[1].plot(ks, [100 * r["by_count"][str(k)] for k in ks], "o-", ms=3, lw=0.8, color=color,
                         label=f"{'ResNet' if kind == 'resnet' else 'plain'}-{d}" if j == 0 else None)
    chance = 100 * _chance_error(measured)
    for ax in axes:
        ax.axhline(chance, color="k", ls=":", lw=0.8, label="chance")
        ax.set_ylabel("test error (%)")
        ax.legend(fontsize=8)
    axes[0].set(xlabel="block deleted (index)", title="one block deleted (one line per seed)")
    axes[1].set(xlabel="number of blocks deleted", title="k random blocks deleted (mean)")
    return save_figure(fig, path)


register(Claim(
    "B2", "Residual networks behave like ensembles of relatively shallow networks (Veit et al. 2016): "
          "deleting one block of a trained ResNet barely changes its test error, while a plain network "
          "collapses; deleting more blocks degrades a ResNet smoothly.",
    "lesions",
    (Part("single", Rule(1, f"every seed: ResNet median test-error rise from deleting one non-downsampling "
                            f"block <= {pct(SINGLE_MAX)}; plain twin's median error after one deletion >= "
                            f"chance error - {pct(COLLAPSE_MARGIN)} (counted where it learned)", judge_single),
          trained=True),
     Part("smooth", Rule(1, f"every seed: in the ResNet no single additional deletion raises the mean test "
                            f"error by more than {pct(STEP_MAX)}", judge_smooth), trained=True)),
    figure="b2_lesions.png",
    caption="Left: test error with one block deleted, by block; look for the ResNet (blue) staying near "
            "its intact error and the plain net (red) jumping to chance. Right: error against the number "
            "of blocks deleted; look for a gradual rise in the ResNet.",
    controls=("plain-twins", "random-labels", "untrained"), draw=_draw))

register_experiment(Experiment("lesions", run, ("B2",), order=45,
                               summary="B2: delete blocks of the trained twins at test time"))
