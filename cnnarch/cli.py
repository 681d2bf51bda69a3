"""The `cnnarch` command line: parse, call one function, print.

Each group of sub-commands is added by one ``_add_*`` function below; only the group of the
command being run imports its libraries, so ``cnnarch --help`` does not load torch.

Errors: a :class:`~cnnarch.errors.CnnarchError` (``UserError`` for bad input) and the OS
errors that bad input causes (a missing file, a folder where a file belongs, no permission)
print one line and exit with the error's ``exit_code`` (2 for bad input; 1 for a failed
check such as ``ToleranceError``). Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .errors import CnnarchError, UserError, first_line, printable
from .model_options import INCEPTION_MODES, STRIDE_AT
from .precision import PRECISIONS
from .signals import interruptible

# OS errors that name the user's input (a path given on the command line), not a bug.
INPUT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                   FileExistsError)


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{printable(self.prog)}: error: {printable(message)} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only that command's group gets its full options
    (the others keep their name and one-line help), so parsing imports no more than it needs."""
    parser = _Parser(prog="cnnarch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_model_commands(sub)
    _add_training_commands(sub, full=command is None or command in ("train", "eval"))
    _add_experiment_commands(sub, full=command is None or command in ("reproduce", "experiment"))
    _add_speed_commands(sub)
    return parser


def _placeholders(sub, helps: dict[str, str]) -> None:
    """Commands listed by name and help only (in ``cnnarch --help``, or while another runs)."""
    for name, help_text in helps.items():
        sub.add_parser(name, help=help_text, add_help=False)


def _command_in(argv: list[str]) -> str:
    """The sub-command named in ``argv`` ("" when none is)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    prog = f"cnnarch {command}" if command else "cnnarch"
    try:  # SIGINT and SIGTERM alike: one line, exit 128 + the signal (cnnarch/signals.py)
        with interruptible("stopped before it finished"):
            args = build_parser(command).parse_args(argv)  # may import torch: inside the handler
            return int(args.func(args) or 0)
    except (CnnarchError, *INPUT_OS_ERRORS) as exc:
        print(f"{printable(prog)}: error: {printable(_one_line(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except BrokenPipeError:  # `cnnarch summary ... | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _one_line(exc: BaseException) -> str:
    """An OS error as "strerror: path" (its str() carries an errno prefix), else its first line."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename}"
    return first_line(exc)


def _version() -> str:
    try:
        return version("cnnarch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: 1 or all, whichever a few timed steps find faster)")


def _apply_threads(args, device="cpu") -> str:
    """Set the CPU thread count (--threads, or measured); -> the line saying what was chosen,
    printed by ``_note`` once the command has got past its checks (an error stays one line)."""
    from .train.threads import set_threads

    return set_threads(args.threads, device=str(device))


def _note(line: str) -> None:
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr)


def _input_size(text: str) -> tuple[int, int, int]:
    """Parse C,H,W (argparse type)."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W integers, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers C,H,W, got {text!r}")
    return parts


# --- models, summary, inception-cost -------------------------------------------------------


def _add_model_commands(sub) -> None:
    p = sub.add_parser("models", help="every registered model: family, params, MACs at its native size")
    p.add_argument("pattern", nargs="?", metavar="PATTERN",
                   help="only the names matching this shell-style pattern, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("summary", help="per-layer params and multiply-adds of one model")
    p.add_argument("model", metavar="MODEL", help="a registered model name (see `cnnarch models`)")
    p.add_argument("--input-size", type=_input_size, metavar="C,H,W",
                   help="input size (default: the model's native size)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--compare", choices=["paper"],
                   help="show the paper's Table 1 beside ours, with the differences")
    p.add_argument("--inception", choices=INCEPTION_MODES,
                   help="GoogLeNet: the paper's bottleneck modules, the same without the ReLU "
                        "after the 1x1 reductions (linear), or the lecture's naive ones")
    p.add_argument("--stride-at", choices=STRIDE_AT,
                   help="ResNet bottleneck stride: on the 3x3 (torchvision v1.5, default) or "
                        "on the first 1x1 (the paper, v1)")
    p.add_argument("--aux", action="store_true",
                   help="GoogLeNet: count in training mode, with the auxiliary classifiers")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("inception-cost",
                       help="the lecture's Inception cost example (naive vs bottleneck module)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--network", default="googlenet", metavar="MODEL",
                   help="GoogLeNet model for the whole-network naive/bottleneck table "
                        "(default: googlenet)")
    p.set_defaults(func=_cmd_inception_cost)


def _cmd_models(args) -> int:
    from . import model_catalog  # the registered facts, read without torch

    catalog = model_catalog(args.pattern)
    if not catalog.rows:
        raise UserError(f"no registered model matches {args.pattern!r} (see `cnnarch models`)")
    print(json.dumps(catalog.to_dict(), indent=2) if args.json else catalog.render())
    return 0


def _cmd_summary(args) -> int:
    from .analysis.summary import summarize

    options = {k: v for k, v in (("inception", args.inception), ("stride_at", args.stride_at)) if v}
    summary = summarize(args.model, args.input_size, aux=args.aux,
                        compare_paper=args.compare == "paper", **options)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.render())
    return 0


def _cmd_inception_cost(args) -> int:
    from .analysis.summary import inception_cost_summary

    summary = inception_cost_summary(args.network)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.render())
    return 0


# --- train, eval ----------------------------------------------------------------------------


def _add_training_commands(sub, full: bool = True) -> None:
    if not full:
        _placeholders(sub, {"train": "train a model (digits by default); writes a run folder",
                            "eval": "evaluate a checkpoint or run folder: top-1/top-5, per class, "
                                    "confusion matrix"})
        return
    from .train.options import DESCRIPTION, add_train_arguments

    p = sub.add_parser("train", help="train a model (digits by default); writes a run folder",
                       description=DESCRIPTION)
    add_train_arguments(p)
    _add_threads(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint or run folder: top-1/top-5, per class, "
                                    "confusion matrix")
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN",
                   help="a .pt checkpoint or a run folder (uses its checkpoints/last.pt)")
    p.add_argument("--best", action="store_true", help="a run folder's best.pt instead of last.pt")
    p.add_argument("--data", metavar="NAME",
                   help="dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", metavar="PATH",
                   help="folder/archive for CIFAR (default: the checkpoint's, else $CNNARCH_DATA)")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing")
    p.add_argument("--val-split", action="store_true",
                   help="evaluate on the held-out validation part of the training split")
    p.add_argument("--batch-size", type=_positive_int, default=500, metavar="N",
                   help="images per forward pass (default 500)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--precision", choices=["bf16", "fp16", "int8"],
                   help="also measure the inference fast path's accuracy cost at this precision "
                        "(cnnarch.inference.optimize): top-1 agreement with fp32 and both accuracies; "
                        "int8 is calibrated on 512 training images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_threads(p)
    p.set_defaults(func=_cmd_eval)


def _cmd_train(args) -> int:
    from .train import NonFiniteLoss, train
    from .train.config import to_toml
    from .train.logging import final_line
    from .train.options import config_from_args

    cfg = config_from_args(args)
    if args.print_config:
        print(to_toml(cfg), end="")
        return 0
    threads = _apply_threads(args, cfg.device)
    if cfg.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    t0 = time.perf_counter()
    try:
        result = train(cfg, announce=[threads])
    except NonFiniteLoss as exc:
        print(f"cnnarch train: error: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    last = result.history[-1] if result.history else {}
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if args.json:
        print(json.dumps({"model": cfg.model, "data": cfg.data, "run_dir": str(result.run_dir),
                          "wall_s": wall, "final": last}, default=str))
    elif last:
        print(final_line(cfg, result))
    else:
        print(f"nothing to do: {result.run_dir} already finished its {cfg.epochs} epochs")
    return 0


def _cmd_eval(args) -> int:
    from .inference.api import evaluate_checkpoint
    from .train.distributed import resolve_device

    device = resolve_device(args.device)
    threads = _apply_threads(args, device)
    result = evaluate_checkpoint(args.checkpoint, best=args.best, data=args.data,
                                 data_dir=args.data_dir, download=args.download,
                                 val_split=args.val_split, batch_size=args.batch_size,
                                 device=device, precision=args.precision)
    _note(threads)
    print(json.dumps(result.to_dict()) if args.json else result.render())
    return 0


# --- experiment, reproduce ------------------------------------------------------------------


def _add_experiment_commands(sub, full: bool = True) -> None:
    if not full:
        _placeholders(sub, {"reproduce": "run one experiment per lecture claim and write the report",
                            "experiment": "run one experiment of `reproduce` and write its report"})
        return
    from .experiments.claims import CONTROLS, claim_ids, experiments
    from .experiments.scales import SCALES

    scales = list(SCALES)

    def common(p, default_out: str | None) -> None:
        p.add_argument("--scale", choices=scales, default="quick",
                       help="quick: digits, minutes on a CPU (make demo); standard: digits, what "
                            "quick leaves out (trained GoogLeNet and ablations, about 15 minutes on "
                            "2 cores); full: the papers' CIFAR recipe and depths 20-110 (hours on one GPU)")
        p.add_argument("--data", default="digits",
                       help="digits (bundled, default) | cifar10 | cifar100 | synthetic[:CxHxW:K:N]")
        p.add_argument("--data-dir", default=None, help="folder/archive for CIFAR")
        p.add_argument("--out", default=default_out,
                       help="report folder (default reports/<timestamp>, also linked as reports/latest)")
        p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
        p.add_argument("--seeds", type=_positive_int, default=None, metavar="N",
                       help="seeds of every trained measurement: --seed .. --seed + N - 1 "
                            "(default: 3 at quick, 1 at full)")
        p.add_argument("--models", type=_name_list, default=None, metavar="LIST",
                       help="comma-separated twin depths or names to train, e.g. 20,56 or "
                            "resnet20,resnet110 (default: the scale's depths)")
        p.add_argument("--iterations", type=_positive_int, default=0, metavar="N",
                       help="stop every trained run after N optimizer steps (default: the scale's)")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (training runs)")
        p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="processes training the seeds side by side, one thread each "
                            "(default: chosen from the idle cores and printed)")
        p.add_argument("--control", choices=sorted(CONTROLS), default="",
                       help="run under a negative control, under which no trained rule may say "
                            "reproduced: " + "; ".join(f"{k}: {v}" for k, v in sorted(CONTROLS.items())))

    exps = experiments()
    p = sub.add_parser(
        "reproduce", help=f"run one experiment per lecture claim ({', '.join(claim_ids())}) and "
                          "write the report",
        description=f"Run every experiment ({', '.join(e.name for e in exps)}) and write "
                    "report.html (self-contained), report.md, results.json and the figures. Each "
                    "claim gets a verdict (reproduced, not reproduced, inconclusive) computed from "
                    "the measured numbers by stated, versioned rules. At --scale full every "
                    "trained model writes its run folder under OUT/runs; rerunning the same command "
                    "resumes and skips finished runs.")
    common(p, None)
    p.set_defaults(func=_cmd_reproduce, only=None)

    p = sub.add_parser(
        "experiment", help="run one experiment of `reproduce` and write its report",
        description="Run one experiment and write the same report as `reproduce` for its claims "
                    "(the other claims show 'not run'); the experiment owning a claim it adds "
                    "parts to runs too (inception-cost for inception-trained and aux-heads). "
                    + "; ".join(f"{e.name}: {e.summary}" for e in exps))
    p.add_argument("name", choices=[e.name for e in exps], help="the experiment")
    common(p, None)
    p.set_defaults(func=_cmd_experiment)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if not any(ch.isdigit() for ch in n)]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected depths or model names like 20,56 or "
                                         f"resnet20,plain56, got {text!r}")
    return names


def _run_reproduce(args, only) -> int:
    from .experiments.reproduce import default_report_dir, link_latest, reproduce, summary_lines

    out = args.out or default_report_dir()
    command = "cnnarch " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("cnnarch") else ""
    results = reproduce(args.scale, args.data, out, seed=args.seed, seeds=args.seeds,
                        data_dir=args.data_dir, device=args.device, only=only,
                        models=args.models, iterations=args.iterations, control=args.control,
                        workers=args.workers, command=command)
    if not args.out:
        link_latest(Path(out))
    for line in summary_lines(results, Path(out)):
        if only and ": not run" in line:
            continue
        print(line)
    return 0


def _cmd_reproduce(args) -> int:
    return _run_reproduce(args, None)


def _cmd_experiment(args) -> int:
    return _run_reproduce(args, [args.name])


# --- bench, export, predict -----------------------------------------------------------------


def _add_speed_commands(sub) -> None:
    p = sub.add_parser(
        "bench", help="speed of one model here: img/s, batch-1 latency, GFLOP/s vs matmul peak",
        description="Benchmark MODEL (random weights, BN statistics calibrated) on this machine: "
                    "throughput (median and spread of repeats after warm-up), batch-1 latency "
                    "percentiles, achieved GFLOP/s and its fraction of a bf16/fp32 matrix-product "
                    "peak measured in the same process. Inference runs the fast path "
                    "(cnnarch.inference.optimize); train times one SGD step.")
    p.add_argument("model", metavar="MODEL", help="a registered model name (see `cnnarch models`)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer",
                   help="time inference (the fast path) or one SGD step (default infer)")
    p.add_argument("--batch", type=_positive_int, default=16, metavar="N",
                   help="images per batch (default 16)")
    p.add_argument("--input-size", type=_input_size, metavar="C,H,W",
                   help="input size (default: the model's native size)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the arithmetic the timed model runs in; auto: bf16 where the CPU/GPU "
                        "has it natively, else fp32 (fp16 on old GPUs); "
                        "int8: post-training quantisation on the CPU, always compiled (needs torchao)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile (inductor; weight freezing on the CPU)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep NCHW memory")
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="inference: keep BatchNorm layers")
    p.add_argument("--repeats", type=_positive_int, default=5, metavar="N",
                   help="timed repeats, median reported (default 5)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_threads(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX, verified in onnxruntime",
        description="Write CHECKPOINT's model as ONNX (dynamic batch, torch.export-based "
                    "exporter), run the file in onnxruntime and compare its logits with "
                    "PyTorch's. The file appears only when the check passes; a mismatch is an "
                    "error (exit 1). The graph takes normalised images; the file's metadata_props "
                    "carry the preprocessing (cnnarch.input_size, mean, std, resize, classes).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .pt checkpoint, a run folder, or a model name with --weights")
    p.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 18; the exporter writes 18 up to the installed onnx's)")
    p.add_argument("--json", action="store_true", help="print the verification as one JSON object")
    _add_weights(p)
    _add_threads(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "predict", help="top-k classes for image files with a trained checkpoint",
        description="Classify image files of any size and format PIL reads, preprocessed as "
                    "`cnnarch eval` does (the checkpoint's stored evaluation transform: channels, "
                    "resize and centre crop, mean and std). `cnnarch predict resnet50 cat.jpg` "
                    "uses torchvision's published ImageNet weights (downloaded once into the "
                    "torch hub cache, hash-checked).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .pt checkpoint, a run folder, or a model name with published weights "
                        "(resnet18 ... resnet152, googlenet_tv)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top-k", type=_positive_int, default=5, metavar="K",
                   help="classes to show per image (default 5)")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    _add_weights(p)
    _add_threads(p)
    p.set_defaults(func=_cmd_predict)


def _add_weights(p) -> None:
    p.add_argument("--weights", metavar="NAME", default=None,
                   help="with a model name: torchvision's published weights to use, e.g. "
                        "IMAGENET1K_V1 (default: DEFAULT, torchvision's default for the model)")


def _cmd_bench(args) -> int:
    import torch

    from .inference.bench import bench

    threads = _apply_threads(args, args.device)
    try:
        result = bench(args.model, args.mode, args.batch, args.input_size, precision=args.precision,
                       compile=args.compile, channels_last=args.channels_last, fold_bn=args.fold_bn,
                       device=args.device, repeats=args.repeats)
    except RuntimeError as exc:  # torch.OutOfMemoryError is one too
        if not isinstance(exc, torch.OutOfMemoryError) and "can't allocate memory" not in str(exc):
            raise
        raise UserError(f"batch {args.batch} does not fit in memory ({first_line(exc)}); "
                        f"use a smaller --batch") from None
    _note(threads)
    print(json.dumps(result.to_dict()) if args.json else result)
    return 0


def _cmd_export(args) -> int:
    from .inference.api import load_for_inference
    from .inference.onnx_export import ONNX_DEFAULT_OPSET, check_opset, export_onnx

    opset = check_opset(ONNX_DEFAULT_OPSET if args.opset is None else args.opset)
    threads = _apply_threads(args)
    model, transform = load_for_inference(args.checkpoint, args.weights)
    report = export_onnx(model, args.onnx, transform, opset=opset)
    _note(threads)
    print(json.dumps(report.to_dict()) if args.json else report)
    return 0


def _cmd_predict(args) -> int:
    from .inference.api import load_for_inference
    from .inference.predict import format_predictions, predict_files
    from .train.distributed import resolve_device

    device = resolve_device(args.device)
    threads = _apply_threads(args, device)
    model, transform = load_for_inference(args.checkpoint, args.weights, device)
    results = predict_files(model, transform, args.images, top_k=args.top_k, device=device)
    _note(threads)
    print(json.dumps(results) if args.json else format_predictions(results))
    return 0
