"""How many seed workers side by side: N single-thread processes training googlenet_small at
once (as ``cnnarch reproduce``'s seed workers do), for N = 1, 2 and 3 on the same cores.

Each process builds googlenet_small (BN, aux heads at weight 0.3, channels_last, fp32, as
the standard scale trains it), takes ``--warmup`` SGD steps on a digits-shaped batch
(64 x 1 x 8 x 8), waits at a barrier for the others, then times ``--steps`` steps: wall
clock and its own CPU time. Per N the table gives the CPU seconds one step costs a process
(median over processes and repeats) and the throughput of all N together, steps per second
of wall clock (N x steps / the slowest process's wall time). The three N run in a different
order on each repeat. On 2 cores, 3 workers finish 3 seeds in one round and 2 workers need
two, so what matters is whether 3 time-sliced processes lose throughput against 2.

    .venv/bin/python benchmarks/seed_workers.py
    .venv/bin/python benchmarks/seed_workers.py --workers 2 3 --repeats 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _worker(barrier, steps: int, warmup: int, batch: int) -> tuple[float, float]:
    """(wall s, CPU s) of ``steps`` training steps, timed after every process is ready."""
    import torch

    from cnnarch.models import create_model
    from cnnarch.models.googlenet import googlenet_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("googlenet_small", in_chans=1, num_classes=10).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, 8, 8).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        googlenet_loss(model(x), y, aux_weight=0.3).backward()
        opt.step()

    for _ in range(warmup):
        step()
    barrier.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def _round(n: int, steps: int, warmup: int, batch: int) -> tuple[list[float], float]:
    """N processes at once -> (CPU s per step of each, steps per wall second of all)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(n) as pool:
        barrier = manager.Barrier(n)
        results = pool.starmap(_worker, [(barrier, steps, warmup, batch)] * n)
    cpu_per_step = [cpu / steps for _, cpu in results]
    return cpu_per_step, n * steps / max(wall for wall, _ in results)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    cpu = {n: [] for n in args.workers}
    rate = {n: [] for n in args.workers}
    for r in range(args.repeats):
        for n in (args.workers if r % 2 == 0 else args.workers[::-1]):
            per_step, steps_per_s = _round(n, args.steps, args.warmup, args.batch)
            cpu[n] += per_step
            rate[n].append(steps_per_s)
    import torch

    print(f"torch {torch.__version__}, googlenet_small, batch {args.batch} x 1 x 8 x 8, one thread "
          f"per process, {args.steps} steps, {args.repeats} repeats")
    print("| processes | CPU s per step, each (median, range) | steps per wall second, all together (median, range) |")
    print("|---|---|---|")
    for n in args.workers:
        print(f"| {n} | {statistics.median(cpu[n]):.3f} ({min(cpu[n]):.3f}-{max(cpu[n]):.3f}) | "
              f"{statistics.median(rate[n]):.2f} ({min(rate[n]):.2f}-{max(rate[n]):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
