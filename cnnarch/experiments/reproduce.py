"""`cnnarch reproduce`: every registered experiment, one report.

The experiments run in their registered order (``claims.experiments()``) in one
``Context``: the trained plain/ResNet twins of each seed are trained once and shared. Each
claim is then judged from its measurements (``claims.judge_claim``), its figure drawn, and
the report written: results.json, report.md and the self-contained report.html.

Seeds train in parallel worker processes (``Context.per_seed``); ``choose_workers`` picks how
many from the cores this process may use and the load average, and results.json records the
choice under ``environment.workers``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import torch

from ..errors import UserError
from ..hardware import usable_cores
from . import claims as registry
from .common import Progress, choose_threads, get_scale
from .context import Context

FULL_HINT = ("`cnnarch reproduce --scale full --data cifar10` (the paper's CIFAR recipe, depths "
             "20-110; see docs/reproduce.md)")


def default_report_dir(root: str = "reports") -> str:
    """Where a report goes when no folder is named: ``reports/<date>-<time>``."""
    return os.path.join(root, time.strftime("%Y%m%d-%H%M%S"))


def link_latest(out: Path) -> None:
    """``reports/latest`` -> ``out``, the newest report beside it (best effort: a real file or
    folder of that name is left alone, and a file system without links keeps no link)."""
    latest = out.parent / "latest"
    try:
        if latest.is_symlink():
            latest.unlink()
        if not latest.exists():
            latest.symlink_to(out.name)
    except OSError:
        pass


def environment(device: str = "cpu") -> dict:
    import numpy
    import torchvision

    from ..hardware import bf16_supported, cpu_flags, cpu_model

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma",
                                  "avx512_vnni"})

    dev = device
    if device == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev = f"{dev} ({torch.cuda.get_device_name()})"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "platform": platform.platform(), "device": dev, "threads": torch.get_num_threads(),
            "cpu": cpu_model(), "cpu_flags": flags, "cpu_bf16": bf16_supported("cpu"), "cpu_count": os.cpu_count()}


def choose_workers(n_seeds: int, device: str = "cpu", requested: int | None = None) -> dict:
    """How many worker processes train the seeds -> {"workers", "reason", ...}.

    ``requested`` (``--workers N``) wins. On a GPU the seeds share the device: one process.
    On CPUs the idle cores are the usable cores less those the 1-minute load average shows
    busy; with fewer than 1.5 idle, one process. Otherwise the smallest number of single-threaded
    workers w that minimises the estimated wall time ceil(n / w) x max(1, w / idle): seeds run
    in rounds of w, and w workers on fewer idle cores share them. 3 seeds on 2 idle cores:
    3 workers (1.5 seed-times) rather than 2 (two rounds, 2 seed-times).
    """
    from ..train.threads import busy_cores

    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UserError(f"--workers must be an integer >= 1, got {requested!r}")
        return {"workers": requested, "reason": "--workers"}
    if str(device).startswith(("cuda", "mps")) or (device == "auto" and torch.cuda.is_available()):
        return {"workers": 1, "reason": "the networks train on the accelerator"}
    cores = usable_cores()
    busy = busy_cores() or 0.0
    idle = cores - busy
    out = {"cores": cores, "busy": round(busy, 2)}
    if n_seeds <= 1 or idle < 1.5:
        return dict(out, workers=1, reason="one seed" if n_seeds <= 1 else f"{idle:.1f} idle cores")
    best = min(range(1, n_seeds + 1), key=lambda w: (math.ceil(n_seeds / w) * max(1.0, w / idle), w))
    return dict(out, workers=best, reason=f"{idle:.1f} idle cores for {n_seeds} seeds")


def _check_names(only) -> list[str]:
    """The experiments to run for ``only`` (None = all), in registered order: each named one,
    and the experiment owning each claim it measures (its counted parts and its figure;
    inception-trained adds parts to G4, which inception-cost owns)."""
    known = registry.experiment_names()
    names = list(only or known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown experiment {unknown[0]!r}; choose from {', '.join(known)}")
    owners = {registry.get_claim(cid).experiment for n in names
              for cid in registry.get_experiment(n).claims}
    return [n for n in known if n in names or n in owners]  # registered order


def run_experiments(ctx: Context, names: list[str]) -> tuple[dict, dict]:
    """Run ``names`` in ``ctx``; -> (measurements by claim id, data by experiment name)."""
    measurements: dict[str, dict] = {}
    data: dict[str, dict] = {}
    for name in names:
        out = registry.get_experiment(name).run(ctx)
        for cid, m in out["measurements"].items():
            measurements.setdefault(cid, {}).update(m)
        data[name] = out.get("data", {})
    return measurements, data


def judge_all(measurements: dict, scale: str, names: list[str]) -> dict:
    """Every registered claim's verdict, parts, figure and controls."""
    out = {}
    for c in registry.claims():
        j = registry.judge_claim(c, measurements.get(c.id, {}), scale, ran=names)
        out[c.id] = dict(j, experiment=c.experiment, figure=c.figure, caption=c.caption,
                         controls=list(c.controls), trained=c.trained)
    return out


def draw_figures(out: Path, results_claims: dict, measurements: dict, data: dict, progress) -> None:
    for c in registry.claims():
        if c.draw is None or not c.figure or c.id not in measurements:
            results_claims[c.id]["figure"] = ""
            continue
        if results_claims[c.id]["verdict"] == registry.NOT_RUN:
            results_claims[c.id]["figure"] = ""
            continue
        try:
            c.draw(measurements[c.id], data, out / c.figure)
        except KeyError as exc:  # a figure that needs an experiment that did not run
            progress.say(f"figure {c.figure}: skipped ({exc} not measured)")
            results_claims[c.id]["figure"] = ""


def reproduce(scale: str = "quick", data: str = "digits", out: str | Path = "reports/latest", *,
              seed: int = 0, seeds: int | None = None, data_dir=None, device: str = "auto",
              only=None, models=None, iterations: int = 0, control: str = "",
              workers: int | None = None, command: str = "", progress: Progress | None = None,
              stream=None) -> dict:
    """Run the experiments (all, or ``only`` = names) with ``seeds`` seeds starting at
    ``seed`` (default: the scale's), write the report into ``out``; return the results dict
    (also written as ``out/results.json``). ``workers``: processes training the seeds
    (None = ``choose_workers``)."""
    from ..report.render import write_html, write_markdown, write_results

    sc = get_scale(scale)
    names = _check_names(only)
    n_seeds = seeds or sc.seeds
    if n_seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {n_seeds}")
    seed_list = tuple(range(seed, seed + n_seeds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    progress = progress or Progress(stream=stream)
    progress.total = 2 * sum(sc.depths) * sc.epochs * n_seeds  # ETA units: twin depth x epochs
    progress.say(f"cnnarch reproduce: scale {sc.name}, data {data}, seeds {list(seed_list)}, out {out}")
    pool = choose_workers(n_seeds, device, workers)
    threads = choose_threads() if device in ("auto", "cpu") and not torch.cuda.is_available() else {}
    if threads:
        progress.say(f"intra-op threads: {threads['threads']} (step times {threads.get('measured_s')})")
    progress.say(f"seed workers: {pool['workers']} process{'es' if pool['workers'] > 1 else ''}"
                 f"{' of 1 thread' if pool['workers'] > 1 else ''} ({pool['reason']}"
                 f"{'' if workers else '; --workers N overrides'})")
    ctx = Context(sc, data=data, data_dir=data_dir, seeds=seed_list, device=device,
                  progress=progress, runs_dir=out / "runs" if sc.run_folders else None,
                  models=tuple(models) if models else None, iterations=iterations, control=control,
                  workers=pool["workers"])
    try:
        measurements, exp_data = run_experiments(ctx, names)
    finally:
        ctx.close()
    claims = judge_all(measurements, sc.name, names)
    progress.say("writing figures and the report")
    draw_figures(out, claims, measurements, exp_data, progress)
    results = {"claims": claims,
               "controls": registry.CONTROLS,
               "environment": dict(environment(device), thread_choice=threads, workers=pool),
               "config": {**{k: v for k, v in vars(sc).items() if k not in ("name", "seeds")},
                          "scale": sc.name, "data": data, "seeds": list(seed_list),
                          "experiments": names, "models": list(models or []),
                          "depths": list(ctx.depths()), "iterations": iterations or sc.iterations,
                          "control": control},
               "command": command or (f"cnnarch reproduce --scale {sc.name} --data {data} --out {out} "
                                      f"--seed {seed} --seeds {n_seeds}"),
               "time_s": time.perf_counter() - t0,
               "measurements": measurements,
               "data": exp_data}
    write_results(results, out)
    write_markdown(results, out)
    write_html(results, out)
    return results


def seeds_note(c: dict) -> str:
    return f" [{len(c['seeds'])} seeds]" if c.get("seeds") else ""


def summary_lines(results: dict, out: Path) -> list[str]:
    lines = [f"report: {Path(out) / 'report.html'} (also report.md, results.json)"]
    for cid, c in results["claims"].items():
        lines.append(f"{cid}: {c['verdict']}{seeds_note(c)} -- {c['reason']}")
    lines.append(f"time: {results['time_s']:.0f} s")
    return lines
