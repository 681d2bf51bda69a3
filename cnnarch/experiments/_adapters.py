"""Registry entries for experiment modules that do not register themselves.

aux_heads.py (G5) still returns the older ``{"claims": {"G5": {verdict, measured, rule}}}``
shape from ``run(scale, data=..., seed=...)``. Until it registers its own claim and
experiment, this adapter runs it for each seed and judges G5 by its ``verdict_g5`` in
every seed. Nothing is registered here for a claim or experiment that already exists.
"""

from __future__ import annotations

from . import aux_heads
from .claims import (
    _CLAIMS,
    _EXPERIMENTS,
    Claim,
    Experiment,
    Part,
    PartResult,
    Rule,
    register,
    register_experiment,
)

REPRODUCED = "reproduced"


def _run_aux_heads(ctx) -> dict:
    per_seed, curves = [], {}
    for seed in ctx.seeds:
        out = aux_heads.run(ctx.scale, data=ctx.data, seed=seed, progress=ctx.progress,
                            data_dir=ctx.data_dir, device=ctx.device)
        c = out["claims"]["G5"]
        per_seed.append({"verdict": c["verdict"], "rule": c["rule"], **c["measured"]})
        curves[str(seed)] = out["data"]["curves"]
    return {"measurements": {"G5": {"seeds": list(ctx.seeds), "per_seed": per_seed}},
            "data": {"curves": curves}}


def _judge_g5(m: dict) -> PartResult:
    verdicts = [s["verdict"] for s in m["per_seed"]]
    ok = all(v == REPRODUCED for v in verdicts)
    reason = " | ".join(f"seed {seed}: {s['rule']}" for seed, s in zip(m["seeds"], m["per_seed"], strict=True))
    return PartResult("reproduced" if ok else "not reproduced", reason,
                      {"verdict_per_seed": verdicts})


def _draw_g5(measured: dict, data: dict, path):
    from ..report import figures

    first = str(measured["seeds"][0])
    return figures.aux_heads(data["aux-heads"]["curves"][first], measured["per_seed"][0], path)


if "G5" not in _CLAIMS:
    register(Claim(
        "G5", "Auxiliary classifiers on 4a and 4d inject extra gradient into the lower layers; "
              "their losses (weight 0.3) are added in training and dropped at inference.",
        "aux-heads",
        (Part("gradient", Rule(1, "the aux losses add >= 5 % to the lower layers' gradient norm "
                                  "where the main loss's gradient vanishes (no normalisation, at "
                                  "init), and on the trained network once it has learned "
                                  "(>= 2 x chance), in every seed", _judge_g5), trained=True),),
        figure="g5_aux_heads.png",
        caption="Left: error with and without the aux losses. Right: the gradient norm reaching "
                "the lower layers from the main loss alone and with the aux losses; look for "
                "taller green bars.",
        controls=(), draw=_draw_g5))
if "aux-heads" not in _EXPERIMENTS:
    register_experiment(Experiment("aux-heads", _run_aux_heads, ("G5",), order=50,
                                   summary="G5: googlenet_small with and without aux heads"))
