"""Side-by-side speed: torchvision vs cnnarch (same mode, fast path) vs onnxruntime.

One process, contenders interleaved (repeat r times each contender in turn, so load drift
hits all of them alike), warmed up, the device synchronised before each clock read, the
median and spread of the repeats reported. Same weights everywhere: the torchvision
model's state_dict (BN statistics calibrated on random data, see cnnarch.inference.bench.noise_bn_statistics)
is loaded into ours with strict=True.

Inference contenders: torchvision fp32 NCHW eager (the baseline a user would otherwise
run), ours in the same mode, ours through ``cnnarch.inference.optimize`` (BN folded,
channels_last, bf16 where native) eager and compiled (inductor, freezing on the CPU), and
onnxruntime fp32 on our ONNX export (CPU EP on the CPU; CUDA EP on a GPU if installed).
Training contenders: one SGD step of torchvision fp32 eager, ours fp32 eager, ours
channels_last + bf16 autocast + fused SGD with the models' speed reorderings, eager and
compiled (what ``cnnarch train`` runs with its fast options on).

    python benchmarks/run.py                  # everything (about 20-30 min on 2 CPU cores)
    python benchmarks/run.py --quick          # resnet18 b16 and resnet56 b128, 3 repeats
    python benchmarks/run.py --device cuda --quick
    python benchmarks/run.py --models resnet50 --modes infer --batches 16

Writes docs/benchmarks.json (results + machine) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

from cnnarch.errors import first_line  # noqa: E402
from cnnarch.hardware import machine_info, sync  # noqa: E402
from cnnarch.inference import export_onnx, onnx_session, optimize  # noqa: E402
from cnnarch.inference.bench import (  # noqa: E402
    calls_per_repeat,
    cold_compile_cache,
    count_flops,
    make_train_step,
    matmul_operands,
    matmul_peak_gflops,
    noise_bn_statistics,
    percentiles,
    resolve_device,
    time_calls,
)
from cnnarch.models import create_model  # noqa: E402
from cnnarch.models.reorder import reordered_view  # noqa: E402
from cnnarch.precision import resolve_precision  # noqa: E402

# (model, input H=W, batch) per mode. resnet56 has no torchvision twin: its baseline is
# our own fp32 eager model.
INFER_CONFIGS = [("resnet18", 224, 16), ("resnet18", 224, 1), ("resnet50", 224, 16),
                 ("resnet50", 224, 1), ("googlenet_tv", 224, 16), ("googlenet_tv", 224, 1),
                 ("resnet56", 32, 128)]
TRAIN_CONFIGS = [("resnet18", 224, 16), ("resnet50", 224, 16), ("googlenet_tv", 224, 16),
                 ("resnet56", 32, 128)]
QUICK_MODELS = ("resnet18", "resnet56")
TV_BUILDERS = {"resnet18": "resnet18", "resnet50": "resnet50", "googlenet_tv": "googlenet"}


@dataclass
class Contender:
    name: str
    fn: object  # () -> anything; one call = one batch
    flops_per_img: float
    peak_dtype: str
    samples: list[float] = field(default_factory=list)  # seconds per call, one per repeat
    singles: list[float] = field(default_factory=list)  # batch 1: every call timed alone
    calls: int = 1
    compile_s: float | None = None
    note: str = ""
    error: str | None = None
    reference_flops: float | None = None  # a matmul-peak reference: FLOPs per call, no images


def peak_reference(dtype_name: str, device: torch.device, peak: dict) -> Contender:
    """The matrix product that gave ``peak`` (its best size), timed as one more contender, so
    that a row's share of the peak compares two measurements of the same minutes: the host's
    speed drifts (by 25 % within one run here), and a peak taken at the start or the end of
    the run may not hold while a model is timed."""
    n = int(max(peak["per_size"], key=peak["per_size"].get))  # keys are str once read from JSON
    a, b, product = matmul_operands(dtype_name, n, device)
    return Contender(f"{dtype_name} matmul {n}x{n} (peak reference)", lambda: product(a, b),
                     0.0, dtype_name, reference_flops=2.0 * n**3)


def build_models(name: str, train: bool, device: torch.device, calib_size: int):
    """(torchvision model or None, our model) with identical weights."""
    aux = train  # GoogLeNet's aux heads only matter in training
    if name in TV_BUILDERS:
        kwargs = {"aux_logits": aux, "init_weights": True} if name == "googlenet_tv" else {}
        tv = getattr(torchvision.models, TV_BUILDERS[name])(weights=None, **kwargs).to(device)
        noise_bn_statistics(tv, torch.randn(16, 3, calib_size, calib_size, device=device))
        ours = create_model(name, **({"aux_logits": aux} if name == "googlenet_tv" else {}))
        ours.load_state_dict(tv.state_dict(), strict=True)
        return tv, ours.to(device)
    ours = create_model(name).to(device)
    noise_bn_statistics(ours, torch.randn(16, 3, calib_size, calib_size, device=device))
    return None, ours


def infer_contenders(name, size, batch, device, args, info, peaks) -> list[Contender]:
    tv, ours = build_models(name, False, device, size)
    x = torch.randn(batch, 3, size, size, device=device)
    flops = count_flops(ours.eval(), x[:1]) / 1.0
    prec = resolve_precision("auto", device)
    out: list[Contender] = []
    if tv is not None:
        tv.eval()
        out.append(Contender("torchvision fp32 eager", lambda: tv(x), flops, "fp32"))
    ours.eval()
    out.append(Contender("ours fp32 eager", lambda: ours(x), flops, "fp32",
                         note="" if tv is not None else "baseline (no torchvision twin)"))
    fast = optimize(ours, x, precision=prec)
    out.append(Contender(f"ours fast ({prec}, NHWC, BN folded)", lambda: fast(x), flops, prec,
                         note=f"check: {fast.check.max_rel_diff:.1e} of max logit, top-1 "
                              f"agreement {fast.check.top1_agreement:.0%}"))
    if not args.no_compile:
        try:
            comp = optimize(ours, x, precision=prec, compile=True)
            out.append(Contender(f"ours fast + compile ({prec})", lambda: comp(x), flops, prec,
                                 compile_s=comp.compile_time_s,
                                 note=f"check: {comp.check.max_rel_diff:.1e} of max logit"))
        except Exception as exc:  # report, keep going
            out.append(_failed(f"ours fast + compile ({prec})", exc))
    if not args.no_int8 and device.type == "cpu":
        out.append(int8_contender(ours, x, size, flops))
    if not args.no_onnx:
        out.append(onnx_contender(ours, size, x, flops, device, info))
    if prec in peaks:
        out.append(peak_reference(prec, device, peaks[prec]))
    return out


def int8_contender(model, x, size, flops) -> Contender:
    """Post-training int8 (cnnarch.inference.quantize: PT2E + X86InductorQuantizer + inductor),
    calibrated on 64 random images: speed does not depend on the scales; accuracy does,
    and needs real data (cnnarch.inference.precision_agreement)."""
    from cnnarch.inference.quantize import int8_available

    name = "ours int8 + compile (PTQ)"
    reason = int8_available()
    if reason:
        return Contender(name, None, flops, "int8", error=reason)
    try:
        calib = torch.randn(64, 3, size, size)
        q = optimize(model, x, precision="int8", calibration=calib, rtol=math.inf)
    except Exception as exc:
        return _failed(name, exc)
    return Contender(name, lambda: q(x), flops, "int8", compile_s=q.compile_time_s,
                     note=f"random weights: {q.check.max_rel_diff:.1e} of max logit, top-1 "
                          f"agreement {q.check.top1_agreement:.0%} (not an accuracy measure)")


def onnx_contender(model, size, x, flops, device, info) -> Contender:
    name = "onnxruntime fp32"
    try:
        import onnxruntime as ort
    except ImportError:
        return Contender(name, None, flops, "fp32", error="onnxruntime not installed")
    if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return Contender(name, None, flops, "fp32",
                         error="skipped: onnxruntime has no CUDA execution provider here")
    tmp = tempfile.mkdtemp(prefix="cnnarch-bench-")
    path = os.path.join(tmp, "model.onnx")
    try:
        export_onnx(model, path, (3, size, size))
        session = onnx_session(path, device)
        feed = {session.get_inputs()[0].name: x.cpu().numpy()}
        provider = session.get_providers()[0]
        info.setdefault("onnxruntime_providers", {})[provider] = True
        return Contender(f"{name} ({provider.replace('ExecutionProvider', '')})",
                         lambda: session.run(None, feed), flops, "fp32",
                         note="input copied from host each call" if device.type == "cuda" else "")
    except Exception as exc:
        return _failed(name, exc)


def train_contenders(name, size, batch, device, args) -> list[Contender]:
    tv, ours = build_models(name, True, device, size)
    x = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, 10, (batch,), device=device)
    flops = count_flops(ours, x[:1], train=True) / 1.0
    prec = resolve_precision("auto", device)
    if prec == "fp32":
        prec_note = "no native bf16 here: fp32"
    else:
        prec_note = ""
    out = []
    if tv is not None:
        out.append(Contender("torchvision fp32 eager", make_train_step(tv, x, target), flops, "fp32"))
    out.append(Contender("ours fp32 eager", make_train_step(copy.deepcopy(ours), x, target), flops,
                         "fp32", note="" if tv is not None else "baseline (no torchvision twin)"))
    # the fast contenders step what `cnnarch train` steps with its fast options on: the model
    # with its declared reorderings (cnnarch.models.reorder), over the same weights
    out.append(Contender(f"ours NHWC + {prec} autocast + fused SGD",
                         make_train_step(reordered_view(copy.deepcopy(ours)), x, target,
                                         precision=prec, channels_last=True, fused=True),
                         flops, prec, note=prec_note))
    if not args.no_compile:
        try:
            step = make_train_step(reordered_view(copy.deepcopy(ours)), x, target, precision=prec,
                                   channels_last=True, compile=True, fused=True)
            start = time.perf_counter()
            step()
            sync(device)
            out.append(Contender(f"ours NHWC + {prec} autocast + fused SGD + compile", step, flops,
                                 prec, compile_s=time.perf_counter() - start))
        except Exception as exc:
            out.append(_failed(f"ours NHWC + {prec} autocast + fused SGD + compile", exc))
    return out


def _failed(name: str, exc: BaseException) -> Contender:
    msg = first_line(exc)
    print(f"  ! {name}: {type(exc).__name__}: {msg[:200]}", file=sys.stderr)
    if os.environ.get("CNNARCH_BENCH_DEBUG"):
        traceback.print_exc()
    return Contender(name, None, 0.0, "fp32", error=f"{type(exc).__name__}: {msg[:200]}")


def run_interleaved(contenders: list[Contender], device, *, warmup: int, repeats: int,
                    min_time: float, batch: int, grad: bool) -> None:
    live = [c for c in contenders if c.fn is not None]
    ctx = torch.enable_grad if grad else torch.no_grad
    with ctx():
        for c in live:
            for _ in range(warmup):
                c.fn()
            sync(device)
            c.calls = calls_per_repeat(c.fn, device, min_time)
        for _ in range(repeats):
            for c in live:
                if batch == 1:  # time every call alone: latency percentiles
                    times = [time_calls(c.fn, 1, device) for _ in range(c.calls)]
                    c.singles.extend(times)
                    c.samples.append(sum(times) / len(times))
                else:
                    c.samples.append(time_calls(c.fn, c.calls, device) / c.calls)


def summarise(contenders, batch, peaks) -> list[dict]:
    rows = []
    base = next((c for c in contenders if c.samples), None)
    ort = next((c for c in contenders if c.name.startswith("onnxruntime") and c.samples), None)
    ref = next((c for c in contenders if c.reference_flops and c.samples), None)
    ref_gflops = ref.reference_flops / statistics.median(ref.samples) / 1e9 if ref else None
    for c in contenders:
        row = {"contender": c.name, "note": c.note, "error": c.error, "compile_s": c.compile_s}
        if c.reference_flops and c.samples:
            med = statistics.median(c.samples)
            row.update(reference=True, ms_per_call=med * 1e3, repeats=len(c.samples),
                       gflops=c.reference_flops / med / 1e9,
                       gflops_min=c.reference_flops / max(c.samples) / 1e9,
                       gflops_max=c.reference_flops / min(c.samples) / 1e9, peak_dtype=c.peak_dtype)
        elif c.samples:
            med = statistics.median(c.samples)
            row.update(
                img_per_s=batch / med, img_per_s_min=batch / max(c.samples),
                img_per_s_max=batch / min(c.samples), ms_per_batch=med * 1e3,
                repeats=len(c.samples), calls_per_repeat=c.calls,
                gflops=c.flops_per_img * batch / med / 1e9,
                peak_dtype=c.peak_dtype,
                fraction_of_peak=c.flops_per_img * batch / med / 1e9 / peaks[c.peak_dtype],
                fraction_of_bf16_peak=(c.flops_per_img * batch / med / 1e9 / peaks["bf16"]
                                       if "bf16" in peaks else None),
                fraction_of_interleaved_peak=(c.flops_per_img * batch / med / 1e9 / ref_gflops
                                              if ref_gflops else None),
                interleaved_peak_dtype=ref.peak_dtype if ref else None,
                speedup_vs_baseline=statistics.median(base.samples) / med,
                speedup_vs_onnxruntime=(statistics.median(ort.samples) / med) if ort else None,
            )
            if c.singles:
                row["latency_ms"] = {k: v * 1e3 for k, v in percentiles(c.singles).items()}
                row["latency_ms"]["n"] = len(c.singles)
        rows.append(row)
    return rows


def profile_small(device, size=32, batch=128, top=8) -> dict:
    """Where the time of an overhead-bound model goes: top ops by self time."""
    _, ours = build_models("resnet56", False, device, size)
    ours.eval()
    x = torch.randn(batch, 3, size, size, device=device)
    prec = resolve_precision("auto", device)
    variants = {"ours fp32 eager": ours, f"ours fast ({prec})": optimize(ours, x, precision=prec)}
    out = {}
    for name, model in variants.items():
        with torch.no_grad():
            for _ in range(3):
                model(x)
            acts = [torch.profiler.ProfilerActivity.CPU]
            if device.type == "cuda":
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=acts) as prof:
                for _ in range(3):
                    model(x)
                sync(device)
        events = prof.key_averages()
        key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        total = sum(getattr(e, key, 0) for e in events) or 1
        rows = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:top]
        out[name] = [{"op": e.key, "calls": e.count // 3, "ms_per_batch": getattr(e, key) / 3e3,
                      "share": getattr(e, key) / total} for e in rows]
        out[name + " total_ms"] = total / 3e3
    return out


def markdown(results: list[dict], device) -> str:
    lines = ["| model | input | batch | mode | contender | img/s (median) | spread | ms/batch "
             "| x baseline | x onnxruntime | GFLOP/s | % peak | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            if row.get("error"):
                lines.append(f"| {r['model']} | {r['input']} | {r['batch']} | {r['mode']} | "
                             f"{row['contender']} | - | - | - | - | - | - | - | {row['error']} |")
                continue
            if row.get("reference"):
                lines.append(
                    f"| {r['model']} | {r['input']} | {r['batch']} | {r['mode']} | {row['contender']} "
                    f"| - | - | {row['ms_per_call']:.1f} ms/product | - | - | {row['gflops']:.0f} "
                    f"({row['gflops_min']:.0f}-{row['gflops_max']:.0f}) | 100 | - |")
                continue
            frac = row.get("fraction_of_interleaved_peak") or row.get("fraction_of_bf16_peak")
            vs_ort = row.get("speedup_vs_onnxruntime")
            comp = row.get("compile_s")
            lines.append(
                f"| {r['model']} | {r['input']} | {r['batch']} | {r['mode']} | {row['contender']} "
                f"| {row['img_per_s']:.1f} | {row['img_per_s_min']:.1f}-{row['img_per_s_max']:.1f} "
                f"| {row['ms_per_batch']:.1f} | {row['speedup_vs_baseline']:.2f} "
                f"| {f'{vs_ort:.2f}' if vs_ort and r['mode'] == 'infer' else '-'} "
                f"| {row['gflops']:.0f} | {f'{100 * frac:.0f}' if frac is not None else '-'} "
                f"| {f'{comp:.0f}' if comp else '-'} |")
    lat = [(r, row) for r in results for row in r["rows"] if row.get("latency_ms")]
    if lat:
        lines += ["", "Batch-1 latency (ms, every call timed alone):", "",
                  "| model | contender | p50 | p90 | p99 | calls |", "|---|---|---|---|---|---|"]
        for r, row in lat:
            la = row["latency_ms"]
            lines.append(f"| {r['model']} | {row['contender']} | {la['p50']:.2f} | "
                         f"{la['p90']:.2f} | {la['p99']:.2f} | {la['n']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--models", help="comma-separated subset of resnet18,resnet50,googlenet_tv,resnet56")
    ap.add_argument("--modes", default="infer,train", help="infer,train (default both)")
    ap.add_argument("--batches", help="comma-separated subset of the batch sizes (16,1,128)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per contender (inference)")
    ap.add_argument("--train-repeats", type=int, default=3, help="timed repeats per contender (training)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per contender first")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per repeat, at least")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the torch.compile bf16/fp16 contenders (int8 always compiles: --no-int8)")
    ap.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 (CPU) contender")
    ap.add_argument("--no-profile", action="store_true", help="skip the resnet56 profile")
    ap.add_argument("--quick", action="store_true",
                    help="resnet18 (b16) and resnet56 (b128), 3 repeats, shorter repeats")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.json"),
                    help="results JSON (default docs/benchmarks.json; '-' for none)")
    args = ap.parse_args(argv)

    cold_compile_cache()  # the compile times reported are first-use costs, not cache hits
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    models = set(args.models.split(",")) if args.models else None
    modes = set(args.modes.split(","))
    batches = {int(b) for b in args.batches.split(",")} if args.batches else None
    if args.quick:
        models = models or set(QUICK_MODELS)
        batches = batches or {16, 128}
        args.repeats = min(args.repeats, 3)
        args.train_repeats = min(args.train_repeats, 3)
        args.min_time = min(args.min_time, 0.25)

    def wanted(cfg):
        return (models is None or cfg[0] in models) and (batches is None or cfg[2] in batches)

    plan = [("infer", c) for c in INFER_CONFIGS if "infer" in modes and wanted(c)]
    plan += [("train", c) for c in TRAIN_CONFIGS if "train" in modes and wanted(c)]
    if not plan:
        ap.error("nothing selected (check --models/--modes/--batches)")

    info = machine_info(device)
    info["load_average_start"] = info.pop("load_average", None)
    started = time.time()
    peak_dtypes = {"fp32", resolve_precision("auto", device)}
    if device.type == "cpu" and not args.no_int8 and "infer" in modes:
        peak_dtypes.add("int8")
    peaks_start = {d: matmul_peak_gflops(d, str(device)) for d in sorted(peak_dtypes)}
    print(f"# cnnarch benchmarks on {info.get('gpu') or info['cpu']} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}", file=sys.stderr)
    print("matmul peak: " + ", ".join(f"{d} {p['gflops']:.0f} GFLOP/s {p['per_size']}"
                                       for d, p in peaks_start.items()), file=sys.stderr)
    peaks = {d: p["gflops"] for d, p in peaks_start.items()}

    results = []
    for mode, (name, size, batch) in plan:
        t0 = time.time()
        print(f"- {mode} {name} {size}x{size} batch {batch} ...", file=sys.stderr, flush=True)
        try:
            if mode == "infer":
                cons = infer_contenders(name, size, batch, device, args, info, peaks_start)
            else:
                cons = train_contenders(name, size, batch, device, args)
            run_interleaved(cons, device, warmup=args.warmup,
                            repeats=args.repeats if mode == "infer" else args.train_repeats,
                            min_time=args.min_time, batch=batch, grad=mode == "train")
        except Exception as exc:
            cons = [_failed(f"{name} {mode}", exc)]
        rows = summarise(cons, batch, peaks)
        results.append({"model": name, "input": f"3x{size}x{size}", "batch": batch, "mode": mode,
                        "gflop_per_img": cons[0].flops_per_img / 1e9 if cons else None,
                        "rows": rows, "seconds": time.time() - t0})
        _write(args.out, {"command": _command(argv), "partial": True, "machine": info,
                          "matmul_peak_gflops": {"start": peaks_start, "used": peaks},
                          "results": results})
        for row in rows:
            if row.get("reference"):
                print(f"    {row['contender']:<44} {row['gflops']:9.0f} GFLOP/s", file=sys.stderr)
            elif "img_per_s" in row:
                print(f"    {row['contender']:<44} {row['img_per_s']:9.1f} img/s "
                      f"(x{row['speedup_vs_baseline']:.2f})", file=sys.stderr, flush=True)
        del cons
    profile = None
    if not args.no_profile and (models is None or "resnet56" in models) and "infer" in modes:
        try:
            profile = profile_small(device)
        except Exception as exc:
            profile = {"error": f"{type(exc).__name__}: {exc}"}
    matmul_peak_gflops.cache_clear()
    peaks_end = {d: matmul_peak_gflops(d, str(device)) for d in peaks_start}
    try:
        load_end = os.getloadavg()
    except OSError:
        load_end = None
    doc = {
        "command": _command(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.time() - started,
        "machine": dict(info, load_average_end=load_end),
        "matmul_peak_gflops": {"start": peaks_start, "end": peaks_end, "used": peaks},
        "results": results,
        "profile_resnet56_b128": profile,
    }
    table = markdown(results, device)
    doc["markdown"] = table
    if _write(args.out, doc):
        print(f"wrote {args.out}", file=sys.stderr)
    print(table)
    if profile and "error" not in profile:
        print("\nresnet56 32x32 batch 128, top ops by self time (ms per batch):\n")
        for name, rows in profile.items():
            if name.endswith("total_ms"):
                continue
            print(f"{name} (total {profile[name + ' total_ms']:.1f} ms):")
            for r in rows:
                print(f"  {r['op']:<40} {r['calls']:4d} calls {r['ms_per_batch']:8.2f} ms "
                      f"{100 * r['share']:5.1f} %")
    return 0


def _command(argv) -> str:
    return "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])


def _write(path: str, doc: dict) -> bool:
    """Atomic JSON write (temp + rename); after every configuration, so a run cut short
    still leaves what it measured."""
    if path == "-":
        return False
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=_jsonable))
    os.replace(tmp, out)
    return True


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
