"""The memory format of the reproduction's fp32 training runs measured: one SGD step of a
digits-shaped batch (64 x 1 x 8 x 8) in NCHW (A) against channels_last (B), one thread (as
each of ``cnnarch reproduce``'s seed workers runs), interleaved A/B in one process.

Each repeat builds the model afresh, times ``--steps`` steps (forward, cross-entropy,
backward, SGD with momentum) in A and then in B, or B then A on odd repeats, and keeps the
median step after ``--warmup`` steps. The table gives each format's median over the
repeats and the median ratio A / B (how much faster channels_last is), with its range.

    .venv/bin/python benchmarks/memory_format.py
    .venv/bin/python benchmarks/memory_format.py --models googlenet_small --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnarch.models import create_model  # noqa: E402

MODELS = ("googlenet_small", "googlenet_small:none", "resnet20", "resnet56", "plain56", "preact_resnet56")


def _step_time(spec: str, channels_last: bool, steps: int, warmup: int, batch: int) -> float:
    name, _, norm = spec.partition(":")
    torch.manual_seed(0)
    kwargs = {"norm": norm} if norm else {}
    model = create_model(name, in_chans=1, num_classes=10, **kwargs).train()
    x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = model(x)
        loss = F.cross_entropy(getattr(out, "logits", out), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="NAME or NAME:NORM")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch} x 1 x 8 x 8")
    print("| model | NCHW ms per step | channels_last ms per step | NCHW / channels_last: median (range) |")
    print("|---|---|---|---|")
    for spec in args.models:
        a, b = [], []
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            t = {cl: _step_time(spec, cl, args.steps, args.warmup, args.batch) for cl in order}
            a.append(t[False])
            b.append(t[True])
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(f"| {spec} | {1e3 * statistics.median(a):.1f} | {1e3 * statistics.median(b):.1f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
