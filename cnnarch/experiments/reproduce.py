"""`cnnarch reproduce`: every experiment, one report.

Order: inception-cost (G1-G4, counting only), degradation (R1-R3; trains the plain/ResNet
twins once), residuals (R4) and gradient-flow (R5) on those same trained twins, aux-heads
(G5). Then the figures, results.json, report.md and the self-contained report.html.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch

from . import aux_heads, degradation, gradient_flow, inception_cost, residuals
from .common import REPRODUCED, Progress, choose_threads, get_scale

EXPERIMENTS = {
    "inception-cost": inception_cost.run,
    "degradation": degradation.run,
    "gradient-flow": gradient_flow.run,
    "residuals": residuals.run,
    "aux-heads": aux_heads.run,
}

FULL_HINT = ("`cnnarch reproduce --scale full --data cifar10` (the paper's CIFAR recipe, depths "
             "20-110; see docs/reproduce.md)")


# Why a claim may need more than the quick budget (shown only when it did not reproduce there).
QUICK_WHY = {
    "G5": ("googlenet_small costs about 12x a ResNet-56 per image, so the quick budget trains it "
           "only a few steps; part (b) of the rule counts only once that network has learned."),
    "R4": ("A BN output's std stays close to its gamma (1 at init) after a few epochs; the paper "
           "trains 64k iterations with weight decay, which the full scale does."),
    "R2": "The deep ResNet may not have converged in the quick budget.",
    "R1": "The deep ResNet may not have converged in the quick budget.",
}


def environment(device: str = "cpu") -> dict:
    import numpy
    import torchvision

    flags = []
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = sorted(have & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma", "avx512_vnni"})
                    break
    except OSError:
        pass
    from ..train.loop import cpu_has_bf16

    dev = device
    if device == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev = f"{dev} ({torch.cuda.get_device_name()})"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "platform": platform.platform(), "device": dev, "threads": torch.get_num_threads(),
            "cpu": cpu, "cpu_flags": flags, "cpu_bf16": cpu_has_bf16(), "cpu_count": os.cpu_count()}


def _figures(out: Path, parts: dict) -> dict:
    from ..report import figures

    made = {}
    ic = parts.get("inception-cost")
    if ic:
        made["g1"] = figures.cost_bars(ic["claims"]["G1"]["measured"], out / "g1_cost.png")
        made["g34"] = figures.inception_modules(ic["data"]["per_module"], ic["data"]["example"],
                                                out / "g3_g4_inception.png")
    dg = parts.get("degradation")
    if dg:
        made["r2"] = figures.degradation(dg["data"]["curves"], dg["data"]["depths"], out / "r2_degradation.png")
    rs = parts.get("residuals")
    if rs:
        made["r4"] = figures.responses(rs["data"]["profiles"],
                                       rs["claims"]["R4"]["measured"]["mean_ratio_per_epoch"],
                                       out / "r4_responses.png")
    gf = parts.get("gradient-flow")
    if gf:
        made["r5"] = figures.gradient_flow(gf["claims"]["R5"]["measured"], out / "r5_gradient_flow.png")
    ah = parts.get("aux-heads")
    if ah:
        made["g5"] = figures.aux_heads(ah["data"]["curves"], ah["claims"]["G5"]["measured"],
                                       out / "g5_aux_heads.png")
    return made


def reproduce(scale: str = "quick", data: str = "digits", out: str | Path = "reports/latest", *,
              seed: int = 0, data_dir=None, device: str = "auto", only=None, command: str = "",
              progress: Progress | None = None, stream=None) -> dict:
    """Run the experiments (all, or ``only`` = names), write the report into ``out``; return
    the results dict (also written as ``out/results.json``)."""
    from ..report.render import CLAIM_IDS, write_html, write_markdown, write_results

    sc = get_scale(scale)
    names = list(only or EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment {unknown[0]!r}; choose from {', '.join(EXPERIMENTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    # ETA units: degradation ~ sum of depths x epochs; aux ~ 2 googlenet runs (~ 10x a ResNet-56
    # epoch each per image); analysis ~ a fixed share.
    twin_units = 2 * sum(sc.depths) * sc.epochs
    progress = progress or Progress(total_units=twin_units * 1.6, stream=stream)
    progress.total = twin_units * 1.6
    progress.say(f"cnnarch reproduce: scale {sc.name}, data {data}, seed {seed}, out {out}")
    threads = choose_threads() if device in ("auto", "cpu") and not torch.cuda.is_available() else {}
    if threads:
        progress.say(f"intra-op threads: {threads['threads']} (step times {threads['measured_s']})")

    ds = None
    shape = (1, 8, 8)
    if any(n in names for n in ("inception-cost",)):
        from .common import load_data

        ds = load_data(data, data_dir)
        shape = (ds.in_chans, *ds.image_size)
    parts: dict[str, dict] = {}
    trained = None
    common = dict(data=data, seed=seed, progress=progress, data_dir=data_dir, device=device)
    aux_units = twin_units * 0.35
    for name in names:
        if name == "inception-cost":
            parts[name] = inception_cost.run(sc, data_shape=shape, progress=progress)
        elif name == "degradation":
            parts[name] = degradation.run(sc, **common)
            trained = parts[name].pop("trained")
        elif name in ("residuals", "gradient-flow"):
            if trained is None:
                trained = degradation.train_twins(sc, data=data, seed=seed, progress=progress,
                                                  data_dir=data_dir, device=device)
            parts[name] = EXPERIMENTS[name](sc, trained=trained, **common)
        elif name == "aux-heads":
            before = progress.done
            parts[name] = aux_heads.run(sc, **common)
            progress.done = before + aux_units
        progress.advance(twin_units * 0.05)
    claims = {}
    for p in parts.values():
        claims.update(p["claims"])
    for cid in CLAIM_IDS:
        if cid not in claims:
            claims[cid] = {"verdict": "not run", "measured": {}, "rule": "experiment not run (--only)"}
        elif claims[cid]["verdict"] != REPRODUCED and sc.name == "quick":
            claims[cid]["note"] = (f"Not reproduced at the quick scale ({data}, {sc.epochs} epochs for "
                                   f"the twins, {sc.aux_iterations or sc.aux_epochs} "
                                   f"{'steps' if sc.aux_iterations else 'epochs'} of googlenet_small). "
                                   f"{QUICK_WHY.get(cid, '')} The paper's setting is {FULL_HINT}.")
    progress.say("writing figures and the report")
    _figures(out, parts)
    results = {"claims": {cid: claims[cid] for cid in CLAIM_IDS},
               "environment": dict(environment(device), thread_choice=threads),
               "config": {"scale": sc.name, "data": data, "seed": seed, "experiments": names,
                          **{k: v for k, v in vars(sc).items() if k != "name"}},
               "command": command or f"cnnarch reproduce --scale {sc.name} --data {data} --out {out} --seed {seed}",
               "time_s": time.perf_counter() - t0}
    results["data"] = {n: p.get("data", {}) for n, p in parts.items()}
    write_results(results, out)
    write_markdown(results, out)
    write_html(results, out)
    return results


def summary_lines(results: dict, out: Path) -> list[str]:
    lines = [f"report: {Path(out) / 'report.html'} (also report.md, results.json)"]
    for cid, c in results["claims"].items():
        lines.append(f"{cid}: {c['verdict']} -- {c['rule']}")
    lines.append(f"time: {results['time_s']:.0f} s")
    return lines


if __name__ == "__main__":  # pragma: no cover
    res = reproduce(*sys.argv[1:3])
    print("\n".join(summary_lines(res, Path("reports/latest"))))
