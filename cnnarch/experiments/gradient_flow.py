"""R5: gradient flow through y = F(x) + x, in both regimes of LECTURE.md.

- With BN (the paper's nets), at initialisation and after training: ||dL/d a|| at every block
  output from the head back to the stem, plain vs residual twin. The ResNet paper (Sec. 4.1)
  says plain nets with BN do not suffer vanishing gradients; measured, a deep plain net's
  gradient *grows* toward the stem, while the residual net keeps it within a small factor.
- Without normalisation (``norm="none"``), at initialisation: the plain net's gradient vanishes
  toward the stem, the residual net's does not (the "+1").
- Block Jacobians dy/dx: singular values of I + dF/dx (residual block) and of dF/dx alone (the
  same block without its shortcut), exactly, on real block inputs.
"""

from __future__ import annotations

import math

import torch

from .common import Progress, claim, fmt_factor, get_scale, load_data, probe_batch

SMALL_FACTOR = 100.0  # "within a small factor": two orders of magnitude over the whole depth
VANISHED = 0.01  # stem/head below this: the gradient vanished
NOT_VANISHED = 0.1  # stem/head at least this: it did not
NEAR_ONE = (0.5, 2.0)  # band for "singular values near 1"


def _log(x: float) -> float:
    return abs(math.log10(x)) if x > 0 and math.isfinite(x) else float("inf")


def _near_one(v: float) -> bool:
    return NEAR_ONE[0] <= v <= NEAR_ONE[1]


def verdict_r5(m: dict) -> dict:
    d = str(m["depth"])
    bn, nn_, tr = m["init_bn"], m["init_none"], m["trained_bn"]
    p_bn, r_bn = bn[f"plain{d}"]["stem_over_head"], bn[f"resnet{d}"]["stem_over_head"]
    r_bn_spread = bn[f"resnet{d}"]["spread"]
    a = _log(r_bn) < _log(p_bn) and r_bn_spread <= SMALL_FACTOR
    p_no, r_no = nn_[f"plain{d}"]["stem_over_head"], nn_[f"resnet{d}"]["stem_over_head"]
    b = p_no < VANISHED and r_no >= NOT_VANISHED
    p_tr, r_tr = tr[f"plain{d}"]["stem_over_head"], tr[f"resnet{d}"]["stem_over_head"]
    r_tr_spread = tr[f"resnet{d}"]["spread"]
    c = r_tr_spread <= SMALL_FACTOR
    jac = m["jacobian_trained"]
    res_med = [j["with_shortcut"][1] for j in jac]
    f_med = [j["without_shortcut"][1] for j in jac]
    res_near = sum(_near_one(v) for v in res_med)
    f_near = sum(_near_one(v) for v in f_med)
    e = bool(jac) and res_near == len(jac) and f_near < len(jac) / 2
    ok = a and b and c and e
    rule = (f"(a) BN, init: head->stem gradient factor ResNet-{d} {fmt_factor(r_bn)} vs plain-{d} "
            f"{fmt_factor(p_bn)} (ResNet closer to 1: {_log(r_bn) < _log(p_bn)}; ResNet spread "
            f"{fmt_factor(r_bn_spread)} <= {SMALL_FACTOR:g}x: {r_bn_spread <= SMALL_FACTOR}); "
            f"(b) no norm, init: plain-{d} {fmt_factor(p_no)} (vanished, < {VANISHED:g}: {p_no < VANISHED}), "
            f"ResNet-{d} {fmt_factor(r_no)} (not vanished, >= {NOT_VANISHED:g}: {r_no >= NOT_VANISHED}); "
            f"(c) BN, trained: ResNet-{d} head->stem {fmt_factor(r_tr)}, spread {fmt_factor(r_tr_spread)} "
            f"<= {SMALL_FACTOR:g}x: {c} (plain-{d}, for reference: {fmt_factor(p_tr)}); (d) trained ResNet-{d}, {len(jac)} identity blocks: median singular "
            f"value of I + dF/dx in [{NEAR_ONE[0]:g}, {NEAR_ONE[1]:g}] in {res_near}/{len(jac)} "
            f"blocks, of dF/dx alone (no shortcut) in {f_near}/{len(jac)} "
            f"-> {'all four hold' if ok else 'not all hold'}")
    return claim(ok, m, rule)


def run(scale="quick", *, data: str = "digits", seed: int = 0, progress: Progress | None = None,
        trained: dict | None = None, data_dir=None, device: str = "auto", **_) -> dict:
    from ..analysis.gradients import activation_gradients, block_jacobians
    from ..models import create_model
    from .degradation import train_twins

    sc = get_scale(scale)
    progress = progress or Progress(enabled=False)
    progress.start("gradient-flow (R5)")
    deep = max(sc.depths)
    if trained is None:
        trained = train_twins(sc, data=data, seed=seed, progress=progress, data_dir=data_dir,
                              device=device, depths=(deep,))
    runs = trained["runs"]
    ds = trained.get("dataset") or load_data(data, data_dir)
    x, y = probe_batch(ds, sc.probe_images, split="train")
    depths = sorted({min(sc.depths), deep})

    def fresh(name, norm):
        torch.manual_seed(seed)
        return create_model(name, in_chans=ds.in_chans, num_classes=ds.num_classes, norm=norm)

    profiles = {"init_bn": {}, "init_none": {}, "trained_bn": {}}
    for regime, norm in (("init_bn", "bn"), ("init_none", "none")):
        progress.say(f"gradient norms at initialisation, {'with BN' if norm == 'bn' else 'no normalisation'}")
        for d in depths:
            for kind in ("plain", "resnet"):
                profiles[regime][f"{kind}{d}"] = activation_gradients(fresh(f"{kind}{d}", norm), x, y).to_dict()
    progress.say("gradient norms after training (BN)")
    for name, r in runs.items():
        if r["depth"] in depths:
            profiles["trained_bn"][name] = activation_gradients(r["model"], x, y).to_dict()
    progress.say(f"block Jacobians (exact SVD) of ResNet-{deep} and its blocks without the shortcut")
    jac_trained = [j.to_dict() for j in block_jacobians(runs[f"resnet{deep}"]["model"], x,
                                                        max_blocks=sc.jacobian_blocks)]
    jac_init = [j.to_dict() for j in block_jacobians(fresh(f"resnet{deep}", "bn"), x,
                                                     max_blocks=sc.jacobian_blocks, calibrate=True)]
    jac_plain = [j.to_dict() for j in block_jacobians(runs[f"plain{deep}"]["model"], x,
                                                      max_blocks=sc.jacobian_blocks)]
    torch.manual_seed(seed)
    zero = create_model(f"resnet{deep}", in_chans=ds.in_chans, num_classes=ds.num_classes,
                        zero_init_residual=True)
    jac_zero = [j.to_dict() for j in block_jacobians(zero, x, max_blocks=2, calibrate=True)]
    m = {"depth": deep, **profiles, "jacobian_trained": jac_trained, "jacobian_init": jac_init,
         "jacobian_plain_trained": jac_plain, "jacobian_zero_init": jac_zero}
    progress.advance(1)
    return {"claims": {"R5": verdict_r5(m)}, "data": {"profiles": profiles}}
