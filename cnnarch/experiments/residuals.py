"""R4: the residual F(x) is small, and shrinks; layer responses (ResNet paper Fig. 7).

Uses the twins trained by the degradation experiment (trains them itself when run alone):
the std of every 3x3 layer's response after BN on the test set, plain vs ResNet and shallow
vs deep ResNet, and ||F(x)|| / ||x|| per block from initialisation through training.
"""

from __future__ import annotations

from .common import Progress, claim, get_scale


def verdict_r4(m: dict) -> dict:
    """ResNet responses smaller than their plain twins' at every depth, smaller for the deeper
    ResNet, and the deepest ResNet's mean ||F(x)||/||x|| lower after training than at init."""
    depths = [str(d) for d in m["depths"]]
    lo, hi = depths[0], depths[-1]
    std = m["mean_response_std"]
    smaller = {d: std[f"resnet{d}"] < std[f"plain{d}"] for d in depths}
    deeper_smaller = std[f"resnet{hi}"] < std[f"resnet{lo}"]
    r0, r1 = m["mean_ratio_init"][hi], m["mean_ratio_final"][hi]
    shrinks = r1 < r0
    ok = all(smaller.values()) and deeper_smaller and shrinks
    parts = "; ".join(f"ResNet-{d} {std[f'resnet{d}']:.3f} {'<' if smaller[d] else '>='} plain-{d} "
                      f"{std[f'plain{d}']:.3f}" for d in depths)
    rule = (f"mean std of 3x3-layer responses after BN (Fig. 7): {parts}; ResNet-{hi} "
            f"{std[f'resnet{hi}']:.3f} {'<' if deeper_smaller else '>='} ResNet-{lo} "
            f"{std[f'resnet{lo}']:.3f} (deeper ResNet smaller: {deeper_smaller}); ResNet-{hi} mean "
            f"||F(x)||/||x|| {r0:.3f} at init -> {r1:.3f} after training ({'shrinks' if shrinks else 'does not shrink'})")
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
