"""The speed reorderings (cnnarch.models.reorder) measured: the paper-order model against the
same model with its max-pools taken before their ReLUs, interleaved A/B in one process.

Training: one SGD step as ``cnnarch train`` runs it with its fast options (channels_last,
the "auto" precision of this machine, the fused SGD update), through the model (A) and
through ``reordered_view(model)`` (B). Inference: the fast path's eager model (BN folded,
channels_last, the auto precision) without (A) and with (B) ``reorder_for_speed``. Each
repeat times A and B back to back, in alternating order (AB, BA, AB, ...), so a change in
the machine's load hits both alike; the table gives the median of each and the median of
the per-repeat ratios B / A in speed (img/s), with their range. "pairs" times only the
swapped operations (ReLU and max-pool, forward and backward, on the maps the model's pairs
see): the most a training step can gain.

    .venv/bin/python benchmarks/reorder_speed.py                    # resnet18, googlenet_tv
    .venv/bin/python benchmarks/reorder_speed.py --models resnet50 --modes train --repeats 9
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnarch.hardware import machine_info  # noqa: E402
from cnnarch.inference.bench import (  # noqa: E402
    calls_per_repeat,
    make_train_step,
    noise_bn_statistics,
    resolve_device,
    time_calls,
)
from cnnarch.inference.fold import fold_bn  # noqa: E402
from cnnarch.models import create_model  # noqa: E402
from cnnarch.models.reorder import reorder_for_speed, reordered_view, swappable_pairs  # noqa: E402
from cnnarch.precision import resolve_precision, torch_dtype  # noqa: E402


def _model(name: str, size: int, device: torch.device, train: bool) -> torch.nn.Module:
    kwargs = {"aux_logits": train} if name.startswith("googlenet") else {}
    torch.manual_seed(0)
    model = create_model(name, **kwargs).to(device)
    return noise_bn_statistics(model, torch.randn(8, 3, size, size, device=device))


def train_pair(name: str, size: int, batch: int, device: torch.device, precision: str):
    """(paper-order step, reordered step): the same weights, each with its own copy."""
    model = _model(name, size, device, train=True)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step(m):
        return make_train_step(m, x, y, precision=precision, channels_last=True, fused=True)

    return step(copy.deepcopy(model)), step(reordered_view(copy.deepcopy(model)))


def infer_pair(name: str, size: int, batch: int, device: torch.device, precision: str):
    """(paper-order forward, reordered forward) of the fast path's eager model."""
    fast = _model(name, size, device, train=False).eval()
    fold_bn(fast)
    fast = fast.to(memory_format=torch.channels_last)
    if precision != "fp32":
        fast = fast.to(torch_dtype(precision))
    reordered = reorder_for_speed(copy.deepcopy(fast))
    x = torch.randn(batch, 3, size, size, device=device).to(torch_dtype(precision))
    x = x.contiguous(memory_format=torch.channels_last)

    def forward(m):
        def call():
            with torch.no_grad():
                return m(x)
        return call

    return forward(fast), forward(reordered)


def pairs_pair(name: str, size: int, batch: int, device: torch.device, precision: str):
    """(ReLU then pool, pool then ReLU) alone, forward and backward, on the maps the model's
    declared pairs see (channels_last, in the training step's dtype): the part of a step
    the reordering changes."""
    model = create_model(name).to(device).train()
    pairs = swappable_pairs(model)
    shapes = []
    hooks = [model.get_submodule(r).register_forward_hook(
        lambda m, i, o: shapes.append(i[0].shape)) for r, _ in pairs]
    with torch.no_grad():
        model(torch.randn(1, 3, size, size, device=device))
    for h in hooks:
        h.remove()
    dtype = torch_dtype(precision)
    maps = [torch.randn(batch, *shape[1:], device=device, dtype=dtype)
            .contiguous(memory_format=torch.channels_last).requires_grad_() for shape in shapes]
    pools = [model.get_submodule(p) for _, p in pairs]

    def run(first_pool: bool):
        def call():
            for x, pool in zip(maps, pools, strict=True):
                y = torch.relu(pool(x)) if first_pool else pool(torch.relu(x))
                y.backward(torch.ones_like(y))
        return call

    return run(False), run(True)


def run_ab(a, b, device, *, warmup: int, repeats: int, min_time: float) -> tuple[list, list]:
    """Seconds per call of ``a`` and ``b``, one sample each per repeat, in alternating order."""
    for fn in (a, b):
        for _ in range(warmup):
            fn()
    calls = max(calls_per_repeat(a, device, min_time), calls_per_repeat(b, device, min_time))
    times = {"a": [], "b": []}
    for r in range(repeats):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        for key, fn in order:
            times[key].append(time_calls(fn, calls, device) / calls)
    return times["a"], times["b"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,googlenet_tv")
    ap.add_argument("--modes", default="train,infer,pairs",
                    help="train (a step), infer (the fast path), pairs (the swapped ops alone)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per repeat, at least")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    info = machine_info(device)
    print(f"# {info.get('gpu') or info['cpu']}, {torch.get_num_threads()} threads, precision "
          f"{precision}, load average {info.get('load_average')}", file=sys.stderr)
    rows = []
    print("| model | mode | batch | pairs swapped | paper order, ms per batch | reordered, ms per "
          "batch | speed, reordered / paper: median (range) |\n|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            pair = {"train": train_pair, "infer": infer_pair, "pairs": pairs_pair}[mode]
            a, b = pair(name, args.size, args.batch, device, precision)
            ta, tb = run_ab(a, b, device, warmup=args.warmup, repeats=args.repeats,
                            min_time=args.min_time)
            ratios = [x / y for x, y in zip(ta, tb, strict=True)]  # speed B / speed A
            pairs = len(swappable_pairs(create_model(name)))
            row = {"model": name, "mode": mode, "batch": args.batch, "size": args.size,
                   "precision": precision, "pairs": pairs,
                   "paper_img_s": args.batch / statistics.median(ta),
                   "reordered_img_s": args.batch / statistics.median(tb),
                   "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                   "ratio_max": max(ratios), "paper_s": ta, "reordered_s": tb}
            rows.append(row)
            print(f"| {name} | {mode} | {args.batch} | {pairs} | {1e3 * statistics.median(ta):.1f} | "
                  f"{1e3 * statistics.median(tb):.1f} | {row['ratio_median']:.3f}x "
                  f"({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) |", flush=True)
    if args.json:
        doc = {"command": "python benchmarks/reorder_speed.py " + " ".join(argv or sys.argv[1:]),
               "machine": info, "threads": torch.get_num_threads(), "results": rows}
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
