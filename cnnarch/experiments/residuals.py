"""R4: the residual F(x) is small, and shrinks; layer responses (ResNet paper Fig. 7).

Uses the twins trained by the degradation experiment (trains them itself when run alone):
the std of every 3x3 layer's response after BN on the test set, plain vs ResNet and shallow
vs deep ResNet, and ||F(x)|| / ||x|| per block from initialisation through training.
"""

from __future__ import annotations

from .common import Progress, claim, get_scale


def verdict_r4(m: dict) -> dict:
    """Three measured parts, all required:

    (a) Fig. 7: every ResNet's 3x3-layer responses (std after BN) are smaller than its plain
        twin's;
    (b) a layer of the deeper ResNet modifies the signal less (the paper's reading of Fig. 7,
        Sec. 4.2): mean ||F(x)||/||x|| after training is smaller for the deeper ResNet;
    (c) the residual shrinks with training: the deepest ResNet's mean ||F(x)||/||x|| is lower
        after training than at initialisation.
    The Fig. 7 std of the deeper vs the shallower ResNet is reported beside them (at short
    training it stays near the BN scale gamma = 1 and need not be ordered by depth).
    """
    depths = [str(d) for d in m["depths"]]
    lo, hi = depths[0], depths[-1]
    std = m["mean_response_std"]
    smaller = {d: std[f"resnet{d}"] < std[f"plain{d}"] for d in depths}
    final = m["mean_ratio_final"]
    deeper_modifies_less = final[hi] < final[lo]
    r0, r1 = m["mean_ratio_init"][hi], final[hi]
    shrinks = r1 < r0
    ok = all(smaller.values()) and deeper_modifies_less and shrinks
    parts = "; ".join(f"ResNet-{d} {std[f'resnet{d}']:.3f} {'<' if smaller[d] else '>='} plain-{d} "
                      f"{std[f'plain{d}']:.3f}" for d in depths)
    std_by_depth = std[f"resnet{hi}"] < std[f"resnet{lo}"]
    rule = (f"(a) mean std of 3x3-layer responses after BN (Fig. 7): {parts}; "
            f"(b) mean ||F(x)||/||x|| after training: ResNet-{hi} {final[hi]:.3f} "
            f"{'<' if deeper_modifies_less else '>='} ResNet-{lo} {final[lo]:.3f} (deeper ResNet "
            f"modifies the signal less: {deeper_modifies_less}); (c) ResNet-{hi} mean ||F(x)||/||x|| "
            f"{r0:.3f} at init -> {r1:.3f} after training ({'shrinks' if shrinks else 'does not shrink'}). "
            f"Beside it, Fig. 7 std by depth: ResNet-{hi} {std[f'resnet{hi}']:.3f} "
            f"{'<' if std_by_depth else '>='} ResNet-{lo} {std[f'resnet{lo}']:.3f} "
            f"({'ordered by depth as in the paper' if std_by_depth else 'not ordered by depth at this training length'})")
    return claim(ok, m, rule)


def run(scale="quick", *, data: str = "digits", seed: int = 0, progress: Progress | None = None,
        trained: dict | None = None, data_dir=None, device: str = "auto", **_) -> dict:
    from ..analysis.responses import response_stds
    from .degradation import train_twins

    sc = get_scale(scale)
    progress = progress or Progress(enabled=False)
    progress.start("residuals (R4)")
    if trained is None:
        d = sorted(sc.depths)
        trained = train_twins(sc, data=data, seed=seed, progress=progress, data_dir=data_dir,
                              device=device, depths=(d[0], d[-1]))
    runs, ds = trained["runs"], trained["dataset"]
    depths = sorted({r["depth"] for r in runs.values()})
    depths = [depths[0], depths[-1]] if len(depths) > 1 else depths
    test_x = ds.normalize(ds.test_images).cpu()
    progress.say(f"Fig. 7: response std of every 3x3 layer on {len(test_x)} test images")
    profiles = {}
    for d in depths:
        for kind in ("plain", "resnet"):
            name = f"{kind}{d}"
            profiles[name] = response_stds(runs[name]["model"], test_x)
    ratios = {str(d): runs[f"resnet{d}"]["ratios"] for d in depths}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    m = {"depths": depths,
         "mean_response_std": {n: p.mean for n, p in profiles.items()},
         "mean_ratio_init": {d: mean(r[0]) for d, r in ratios.items()},
         "mean_ratio_final": {d: mean(r[-1]) for d, r in ratios.items()},
         "mean_ratio_per_epoch": {d: [mean(e) for e in r] for d, r in ratios.items()}}
    progress.advance(1)
    return {"claims": {"R4": verdict_r4(m)},
            "data": {"profiles": {n: p.to_dict() for n, p in profiles.items()},
                     "ratios": {d: [list(e) for e in r] for d, r in ratios.items()}}}
