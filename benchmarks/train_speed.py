"""Training throughput: our loop (fast defaults, and fast options off) against a plain
PyTorch fp32 NCHW loop, in the same process, interleaved, warmed up, median of repeats.

Cases: resnet18 at 224x224 (baseline: torchvision's resnet18) and resnet56 at 32x32
(torchvision has no CIFAR ResNet; baseline: our resnet56, same architecture, in the plain
loop). Data are synthetic uint8 images; our loop also augments them (pad-crop + flip) and
normalises on the device, which the baseline does not -- the comparison favours the
baseline. Our img/s is the second epoch of a two-epoch ``train()`` (the first is warm-up),
timed by the loop itself (training phase only, CUDA synchronised at epoch end).

    .venv/bin/python benchmarks/train_speed.py            # table + docs/benchmarks_train.json
    .venv/bin/python benchmarks/train_speed.py --repeats 5 --steps 10   # steadier

Runs unchanged on CUDA (device auto; larger default batches there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnarch.hardware import bf16_supported, sync  # noqa: E402
from cnnarch.inference.bench import cold_compile_cache  # noqa: E402
from cnnarch.models import create_model  # noqa: E402
from cnnarch.train import TrainConfig, train  # noqa: E402
from cnnarch.train.distributed import resolve_device  # noqa: E402
from cnnarch.train.loop import resolve_speed  # noqa: E402


def baseline_img_per_s(name: str, size: int, batch: int, steps: int, device: torch.device) -> float:
    """The plain loop: fp32, NCHW, SGD with momentum, one fixed random batch."""
    if name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=1000)
    else:
        model = create_model(name, num_classes=10)
    classes = 1000 if name == "resnet18" else 10
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def ours_img_per_s(name: str, size: int, batch: int, steps: int, device: torch.device,
                   fast: bool, compile: bool = False) -> tuple[float, float]:
    """(img/s of epoch 2, seconds epoch 1 took beyond epoch 2: warm-up, and compilation)."""
    classes = 1000 if name == "resnet18" else 10
    cfg = TrainConfig(model=name, data=f"synthetic:3x{size}x{size}:{classes}:{batch * steps}",
                      batch_size=batch, epochs=2, lr=0.01, warmup_epochs=0.0, eval_every=2,
                      quiet=True, device=str(device), compile=compile,
                      **({} if fast else {"precision": "fp32", "channels_last": "off"}))
    first, second = train(cfg).history
    first_train_s = batch * steps / first["img_per_s"]
    second_train_s = batch * steps / second["img_per_s"]
    return second["img_per_s"], first_train_s - second_train_s  # epoch 2: warmed up


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per contender")
    p.add_argument("--steps", type=int, default=0, help="timed steps per run (0 = by device)")
    p.add_argument("--batch-224", type=int, default=0, help="resnet18 batch (0 = 16 CPU / 128 CUDA)")
    p.add_argument("--batch-32", type=int, default=0, help="resnet56 batch (0 = 128 CPU / 512 CUDA)")
    p.add_argument("--cases", default="resnet18,resnet56")
    p.add_argument("--no-compile", action="store_true",
                   help="skip the `--compile` contender (torch.compile of the model in our loop)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = PyTorch's default); 1 is steadier on a busy machine")
    p.add_argument("--json", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks_train.json"))
    args = p.parse_args()

    cold_compile_cache()  # the compile time reported is the first-use cost, not a cache hit

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (20 if cuda else 3)
    cases = {"resnet18": (224, args.batch_224 or (128 if cuda else 16)),
             "resnet56": (32, args.batch_32 or (512 if cuda else 128))}
    speed = resolve_speed(TrainConfig(), device, (32, 32)).describe()
    results = []
    for name in args.cases.split(","):
        size, batch = cases[name]
        runs = {"baseline fp32 NCHW": [], "ours fast defaults": [], "ours fast off": []}
        if not args.no_compile:
            runs["ours fast + compile"] = []
        first_epoch_extra = {k: [] for k in runs if k.startswith("ours")}
        for _ in range(args.repeats):  # interleaved: each repeat runs every contender once
            runs["baseline fp32 NCHW"].append(baseline_img_per_s(name, size, batch, steps, device))
            for key, fast, comp in (("ours fast defaults", True, False), ("ours fast off", False, False),
                                    ("ours fast + compile", True, True)):
                if key in runs:
                    img_s, extra = ours_img_per_s(name, size, batch, steps, device, fast, comp)
                    runs[key].append(img_s)
                    first_epoch_extra[key].append(extra)
        med = {k: statistics.median(v) for k, v in runs.items()}
        results.append({
            "model": name, "input": f"3x{size}x{size}", "batch": batch, "steps": steps,
            "baseline": "torchvision resnet18" if name == "resnet18" else "cnnarch resnet56 (same architecture)",
            **{k: summary(v) for k, v in runs.items()},
            "speedup_fast": med["ours fast defaults"] / med["baseline fp32 NCHW"],
            "speedup_off": med["ours fast off"] / med["baseline fp32 NCHW"],
            "first_epoch_extra_s": {k: summary(v) for k, v in first_epoch_extra.items()},
        })
        line = (f"{name:9s} {size:3d}px b{batch:<4d} baseline {med['baseline fp32 NCHW']:8.1f} img/s | "
                f"ours fast {med['ours fast defaults']:8.1f} ({results[-1]['speedup_fast']:.2f}x) | "
                f"ours off {med['ours fast off']:8.1f} ({results[-1]['speedup_off']:.2f}x)")
        if "ours fast + compile" in med:
            results[-1]["speedup_compile"] = med["ours fast + compile"] / med["baseline fp32 NCHW"]
            compile_s = first_epoch_extra["ours fast + compile"][0]  # the first compile of the process
            results[-1]["compile_s_first_repeat"] = compile_s
            line += (f" | ours fast + compile {med['ours fast + compile']:8.1f} "
                     f"({results[-1]['speedup_compile']:.2f}x; compile ~{compile_s:.0f} s)")
        print(line, flush=True)
    out = {
        "command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "device_type": device.type, "cpu_bf16": bf16_supported("cpu"), "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "fast_defaults": speed,
        "load_avg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "repeats": args.repeats, "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
