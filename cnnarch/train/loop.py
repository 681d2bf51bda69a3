"""The training loop, in named pieces.

``train(config)`` = ``_build`` (data, model, optimizer, schedule; the model is checked
against the data's image size before any file is written) -> ``restore`` (resume, under
the rule of train/resume.py) -> the run folder (train/rundir.py) -> for each epoch
``train_one_epoch`` (schedule -> forward/loss -> backward -> step -> log) and
``end_epoch`` (evaluate -> checkpoint -> report). What must be closed (the run folder's
lock and writers, the progress bar, signal handlers, the process group) is registered on
one ``contextlib.ExitStack``. SIGINT/SIGTERM stop at the next step (cnnarch/signals.py).
The step runs ``Session.train_model``: with a fast option on, the model reordered for speed
(``cnnarch.models.reorder``: a second module tree over the same parameters and buffers),
then DDP-wrapped under torchrun and compiled with ``compile``; evaluation, checkpoints,
``on_epoch_end`` and the returned model are the model in the papers' order.
``evaluate(model, dataset)`` gives top-1/top-5, loss, per-class accuracy and the
confusion matrix.

Exactness: every random stream (torch, numpy, python, the data/augmentation generator) is
seeded from ``config.seed`` and saved in each checkpoint with the optimizer, grad scaler
and schedule state, so on CPU a run stopped after epoch k and resumed ends with bitwise
the same weights and metrics as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError, first_line
from ..models.reorder import reordered_view
from ..precision import resolve_precision, torch_dtype
from ..signals import Interrupted, StopRequest
from . import distributed as dist_utils
from .batchnorm import batchnorm_for_compile
from .checkpoint import (
    FORMAT,
    VERSION,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    set_rng_state,
    storage_error,
)
from .config import TrainConfig
from .logging import epoch_line, progress_bar
from .optim import FusedSGD
from .resume import resume_notices, run_folder_of
from .rundir import RunFolder, check_out
from .schedule import LRSchedule

log = logging.getLogger("cnnarch.train")
NO_STEP = 2**62  # "no non-finite loss seen" marker


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stopped without saving the bad state."""


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained model (unwrapped, eval mode)
    history: list[dict]  # one record per epoch (see CONTRACTS.md)
    run_dir: Path | None  # None when config.out is None
    total_s: float = 0.0  # wall time of the whole run, the sessions before a resume included
    resumed_from: int = 0  # epochs done before this call (0 = a fresh run)
    classes: list = field(default_factory=list)  # class names, in label order


@dataclass(frozen=True)
class Speed:
    """The resolved speed options (what "auto" became on this device)."""

    amp_dtype: torch.dtype | None  # autocast dtype, None = fp32
    grad_scaler: bool  # fp16 needs loss scaling
    channels_last: bool
    compile: bool

    @property
    def reorder(self) -> bool:
        """Whether the model that runs takes the models' declared speed reorderings
        (``cnnarch.models.reorder``): with any fast option on. With all of them off the step
        runs the reference model as it is."""
        return self.amp_dtype is not None or self.channels_last or self.compile

    def describe(self) -> dict:
        dtype = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return {"precision": dtype, "channels_last": self.channels_last, "compile": self.compile,
                "reorder": self.reorder}


def resolve_speed(cfg: TrainConfig, device: torch.device, image_size: tuple[int, int]) -> Speed:
    """Turn ``precision``/``channels_last`` "auto" into the measured safe fast choice.

    auto precision: ``cnnarch.precision.resolve_precision``'s rule (bf16 autocast where the
    device computes bf16 natively, fp16 + GradScaler on a CUDA GPU without it, fp32
    elsewhere). auto channels_last: on for CPU and CUDA (the measurements are in
    docs/benchmarks.md). ``image_size`` is kept for devices where the answer depends on it.
    """
    del image_size
    precision = resolve_precision("auto", device) if cfg.precision == "auto" else cfg.precision
    amp = None if precision == "fp32" else torch_dtype(precision)
    if cfg.channels_last == "auto":
        cl = device.type in ("cpu", "cuda")
    else:
        cl = cfg.channels_last == "on"
    return Speed(amp, amp == torch.float16 and device.type == "cuda", cl, cfg.compile)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over all parameters, as one fused kernel per
    step where PyTorch has it (CPU and CUDA) instead of one small update per parameter (a
    ResNet-56 has ~420); SGD's fused step also skips the copies PyTorch makes of
    channels_last weights (train/optim.py). Speed: docs/benchmarks.md."""
    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        def make(fused: bool = False) -> torch.optim.Optimizer:
            cls = FusedSGD if fused else torch.optim.SGD  # FusedSGD: no copies for channels_last
            return cls(params, lr=cfg.lr, momentum=cfg.momentum,
                       nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    else:
        make = lambda **kw: torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999),  # noqa: E731
                                              weight_decay=cfg.weight_decay, **kw)
    if {p.device.type for p in params} <= {"cpu", "cuda"}:
        try:
            return make(fused=True)
        except (RuntimeError, TypeError, ValueError):  # an older PyTorch without the CPU kernel
            pass
    return make()


@dataclass
class Session:
    """What one training run holds while it runs (built by ``_build``, resumed by ``restore``)."""

    cfg: TrainConfig
    info: dist_utils.DistInfo
    device: torch.device
    data: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    generator: torch.Generator
    speed: Speed
    steps_per_epoch: int
    total_steps: int
    meta: dict
    train_model: torch.nn.Module | None = None  # what the step runs: model, reordered for speed
    # (the same tensors), DDP-wrapped and/or compiled
    run: RunFolder | None = None
    start_epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    best_acc: float = -1.0
    earlier_s: float = 0.0  # wall time of the sessions before a resume
    started: float = field(default_factory=time.perf_counter)

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def criterion(self, logits, y):
        return F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.speed.amp_dtype or torch.float32,
                              enabled=self.speed.amp_dtype is not None)

    def state(self, epoch: int) -> dict:
        """The checkpoint after ``epoch`` epochs (see checkpoint.py for the keys)."""
        return {"format": FORMAT, "version": VERSION, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "schedule": self.schedule.state_dict(), "epoch": epoch, "step": self.step,
                "rng": rng_state(self.generator), "config": self.cfg.replace(resume=None).to_dict(),
                "meta": self.meta, "history": self.history, "best_acc": self.best_acc,
                "speed": self.speed.describe(), "elapsed_s": self.elapsed_s}

    @property
    def elapsed_s(self) -> float:
        return self.earlier_s + time.perf_counter() - self.started

    def say(self, text: str) -> None:
        if self.info.is_main:
            print(text, file=sys.stderr, flush=True)


def train(config: TrainConfig, *, on_epoch_end=None, announce=()) -> TrainResult:
    """Train ``config.model`` on ``config.data`` (see TrainConfig); returns the trained model,
    the per-epoch history and the run folder. ``announce``: lines printed (stderr, rank 0)
    once the run has passed its checks, before the first step."""
    with contextlib.ExitStack() as stack:
        try:
            return _train(config, stack, on_epoch_end, list(announce))
        except OSError as exc:  # a full / read-only disk anywhere: one line naming the path
            raise (storage_error(exc, config.out) or exc) from None


def _train(config: TrainConfig, stack: contextlib.ExitStack, on_epoch_end, announce: list) -> TrainResult:
    started_group = not torch.distributed.is_initialized()
    info, device = dist_utils.setup(config.device)
    if started_group and info.enabled:
        stack.callback(dist_utils.cleanup)
    dist_utils.check_batch(config.batch_size, info)
    cfg = config
    if cfg.out is None and cfg.resume:
        cfg = cfg.replace(out=str(run_folder_of(cfg.resume)))  # keep writing into the resumed run
    cfg = cfg.replace(out=dist_utils.broadcast_object(cfg.out, info))
    _agree(info, lambda: check_out(Path(cfg.out), resuming=bool(cfg.resume)) if cfg.out else None)
    resume_state, resumed_from = _read_resume(cfg)
    s = _build(cfg, info, device, resume_state)
    notices = restore(s, resume_state, resumed_from) if resume_state is not None else []
    del resume_state
    runner = reordered_view(s.model) if s.speed.reorder else s.model  # shares s.model's tensors
    s.train_model = dist_utils.wrap(runner, info, device, s.cfg.sync_bn)
    if s.cfg.sync_bn and info.enabled and runner is s.model:
        s.model = s.train_model.module  # SyncBatchNorm replaced the BN layers
    if s.speed.compile:
        stack.callback(batchnorm_for_compile(runner, device))  # see train/batchnorm.py
        s.train_model = torch.compile(s.train_model)
    if s.cfg.out is not None and info.is_main:
        s.run = RunFolder(Path(s.cfg.out))
        stack.callback(s.run.close)
    notices += _agree(info, lambda: s.run.open(s.cfg, s.history, s.step) if s.run else []) or []
    for line in announce + notices:
        s.say(line)
    bar = stack.enter_context(contextlib.closing(
        progress_bar(s.total_steps, s.step, enabled=info.is_main and not s.cfg.quiet)))
    stop = stack.enter_context(StopRequest())
    for epoch in range(s.start_epoch, s.epochs):
        record = train_one_epoch(s, epoch, bar, stop)
        if stop.requested:
            raise _interrupted(s, stop)
        end_epoch(s, record, bar, on_epoch_end)
    if stop.requested:  # arrived during the last epoch's evaluation or checkpoint: not swallowed
        raise _interrupted(s, stop)
    if s.cfg.out is not None and s.history:  # every rank evaluates (it all-reduces); rank 0 writes
        final = evaluate(s.model, s.data, device=device, speed=s.speed)
        if s.run is not None:
            s.run.write({"type": "final", "epoch": len(s.history), "step": s.step,
                         **{k: final[k] for k in ("top1", "top5", "loss", "per_class", "n", "split")}})
    s.model.eval()
    return TrainResult(s.model, s.history, Path(s.cfg.out) if s.cfg.out else None, s.elapsed_s,
                       s.start_epoch, list(s.data.classes))


def _agree(info, work):
    """Run ``work`` on rank 0; every rank raises its UserError, or gets its result."""
    result, err = None, None
    if info.is_main:
        try:
            result = work()
        except UserError as exc:
            err = str(exc)
    err = dist_utils.broadcast_object(err, info)
    if err:
        raise UserError(err)
    return result


def _read_resume(cfg: TrainConfig) -> tuple[dict | None, Path | None]:
    """The checkpoint to resume from: last.pt, else best.pt (announced by ``restore``)."""
    if not cfg.resume:
        return None, None
    path = find_checkpoint(cfg.resume)
    return load_checkpoint(path), path


def _build(cfg: TrainConfig, info, device, resume_state) -> Session:
    """Data, model, optimizer, schedule; checks the model takes the data's images and fits the
    batch to the split, all before the run folder exists."""
    from ..data import load_dataset
    from ..models import create_model

    seed_everything(cfg.seed)
    if not info.is_main:  # rank 0 downloads/extracts first; the others then read its copy
        dist_utils.barrier(info)
    data = load_dataset(cfg.data, data_dir=cfg.data_dir, download=cfg.download and info.is_main,
                        val_split=cfg.val_split, seed=cfg.seed, device=device,
                        image_size=cfg.image_size, workers=cfg.workers)
    if info.is_main:
        dist_utils.barrier(info)
    if cfg.image_size and hasattr(data, "warn_if_upscaling") and info.is_main:
        data.warn_if_upscaling()
    model_kwargs = {**cfg.model_kwargs, "num_classes": data.num_classes, "in_chans": data.in_chans}
    check_input_fits(cfg.model, model_kwargs, (data.in_chans, *data.image_size), cfg.data)
    if resume_state is None and data.train_size < cfg.batch_size:
        fitted = max(info.world_size, data.train_size // info.world_size * info.world_size)
        if info.is_main:
            print(f"batch size {cfg.batch_size} is larger than the training split "
                  f"({data.train_size} images); using {fitted}", file=sys.stderr)
        cfg = cfg.replace(batch_size=fitted)
    steps_per_epoch = data.steps_per_epoch(cfg.batch_size)
    if steps_per_epoch == 0:
        raise UserError(f"batch_size {cfg.batch_size} is larger than the training split "
                        f"({data.train_size} images)")
    model = create_model(cfg.model, **model_kwargs).to(device)
    speed = resolve_speed(cfg, device, data.image_size)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator(device=getattr(data, "device", torch.device("cpu")))
    generator.manual_seed(cfg.seed)
    total_steps = cfg.iterations or cfg.epochs * steps_per_epoch
    meta = {"model": cfg.model, "model_kwargs": dict(cfg.model_kwargs),
            "num_classes": data.num_classes, "in_chans": data.in_chans,
            "input_size": [data.in_chans, *data.image_size], "mean": list(data.mean),
            "std": list(data.std), "classes": list(data.classes), "dataset": cfg.data,
            "eval_split": data.eval_split, "transform": data.eval_transform.to_dict()}
    return Session(cfg, info, device, data, model, build_optimizer(cfg, model),
                   torch.amp.GradScaler(device.type, enabled=speed.grad_scaler),
                   LRSchedule.from_config(cfg, steps_per_epoch, total_steps), generator, speed,
                   steps_per_epoch, total_steps, meta)


def check_input_fits(name: str, kwargs: dict, size: tuple[int, int, int], data: str) -> None:
    """Run the model once on the meta device (shapes only): a model that cannot take the
    data's images fails here, naming the models of its family made for smaller inputs."""
    from ..models import MODELS, create_model

    with torch.device("meta"):
        model = create_model(name, **kwargs)
    try:
        model.eval()(torch.zeros(2, *size, device="meta"))
    except (ValueError, RuntimeError) as exc:
        family = MODELS[name].family
        smaller = [n for n, e in MODELS.items() if e.family == family
                   and e.input_size[-1] < MODELS[name].input_size[-1]]
        hint = f"; for small images try {', '.join(smaller)}" if smaller else ""
        raise UserError(f"{name} cannot train on {data} ({'x'.join(map(str, size))} images): "
                        f"{first_line(exc)}{hint}") from None


def restore(s: Session, state: dict, path: Path) -> list[str]:
    """Load a checkpoint into the session after checking the resume rule (train/resume.py);
    -> the notices saying what the resume does."""
    saved = state["meta"]
    if saved["model"] != s.cfg.model:
        raise UserError(f"checkpoint {path} is for {saved['model']}, not {s.cfg.model}")
    if saved["num_classes"] != s.data.num_classes or saved["in_chans"] != s.data.in_chans:
        raise UserError(f"checkpoint {path} was trained on {saved.get('dataset')}, which does not "
                        f"fit {s.cfg.data}")
    epoch, step = int(state["epoch"]), int(state["step"])
    try:
        before = TrainConfig.from_dict(state.get("config") or {}, source=str(path))
    except UserError as exc:
        raise UserError(f"checkpoint {path} holds a config this cnnarch cannot read: {exc}") from None
    notices = resume_notices(before, s.cfg, done_steps=step, done_epochs=epoch,
                             steps_per_epoch=s.steps_per_epoch)
    if saved.get("model_kwargs", {}) != before.model_kwargs:
        raise UserError(f"checkpoint {path} is damaged: its model options {saved.get('model_kwargs')} "
                        f"disagree with its config's {before.model_kwargs}")
    try:
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"checkpoint {path} does not match {s.cfg.model}: {first_line(exc)}") from None
    for group in s.optimizer.param_groups:  # resume_notices allowed and announced these
        group.update(weight_decay=s.cfg.weight_decay)
        if "momentum" in group:
            group["momentum"] = s.cfg.momentum
    if s.speed.grad_scaler and state.get("scaler"):
        s.scaler.load_state_dict(state["scaler"])
    s.schedule.load_state_dict(state.get("schedule", {}))
    set_rng_state(state["rng"], s.generator)
    s.start_epoch, s.step = epoch, step
    s.history = list(state.get("history", []))
    s.best_acc = float(state.get("best_acc", -1.0))
    s.earlier_s = float(state.get("elapsed_s", sum(r.get("time_s", 0.0) for r in s.history)))
    which = "" if path.name == "last.pt" or path.parent.name != "checkpoints" else (
        f" ({path.name}: last.pt is missing)")
    head = f"resuming {s.cfg.out or path} from epoch {epoch} of {s.epochs} (step {step}){which}"
    return [head, *(f"  changed: {n}" for n in notices)]


def train_one_epoch(s: Session, epoch: int, bar, stop: StopRequest) -> dict:
    """One pass of schedule -> forward/loss -> backward -> step -> log; -> the epoch record
    (test fields empty; ``end_epoch`` fills them)."""
    from ..models import GoogLeNetOutputs, googlenet_loss

    s.train_model.train()
    t0 = time.perf_counter()
    window = torch.zeros(3, dtype=torch.float64, device=s.device)  # loss sum, correct, seen
    first_bad = torch.full((), NO_STEP, dtype=torch.int64, device=s.device)
    step_t = torch.full((), s.step, dtype=torch.int64, device=s.device)  # no host->device copy per step
    totals, done = [0.0, 0.0, 0.0], 0
    for x, y in s.data.train_batches(s.cfg.batch_size, s.generator, rank=s.info.rank,
                                     world=s.info.world_size, epoch=epoch, device=s.device):
        if s.step >= s.total_steps or stop.requested:
            break
        lr = s.cfg.lr * s.schedule.factor(s.step)  # -- schedule
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        if s.speed.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with s.autocast():  # -- forward / loss (GoogLeNet: main + aux_weight x (aux1 + aux2))
            out = s.train_model(x)
            loss = googlenet_loss(out, y, s.criterion, aux_weight=s.cfg.aux_weight)
        logits = out.logits if isinstance(out, GoogLeNetOutputs) else out
        s.optimizer.zero_grad(set_to_none=True)  # -- backward / step
        s.scaler.scale(loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        loss_d = loss.detach()  # -- log (tensors only; the host syncs every log_every steps)
        first_bad = torch.where(~torch.isfinite(loss_d) & (first_bad == NO_STEP), step_t, first_bad)
        window += torch.stack([loss_d.double() * len(y), (logits.detach().argmax(1) == y).sum().double(),
                               torch.tensor(float(len(y)), dtype=torch.float64, device=s.device)])
        s.step += 1
        step_t += 1
        done += 1
        bar.update(1)
        if s.step % s.cfg.log_every == 0 or s.step >= s.total_steps or done >= s.steps_per_epoch:
            totals = _sync_window(s, window, first_bad, totals, epoch, lr, bar, t0)
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    train_time = time.perf_counter() - t0
    return {"type": "epoch", "epoch": epoch + 1, "step": s.step,
            "train_loss": totals[0] / max(totals[2], 1), "train_acc": totals[1] / max(totals[2], 1),
            "test_loss": None, "test_acc": None, "test_top5": None, "eval_split": s.data.eval_split,
            "lr": s.cfg.lr * s.schedule.factor(max(s.step - 1, 0)),
            "img_per_s": totals[2] / max(train_time, 1e-9), "time_s": train_time}


def _sync_window(s: Session, window, first_bad, totals, epoch: int, lr: float, bar, t0) -> list:
    """Every log_every steps: sum the window over ranks, stop on a non-finite loss, update
    the progress bar and the R-110 warm-up; -> the epoch's running totals."""
    dist_utils.all_reduce_sum(window, s.info)
    dist_utils.all_reduce_min(first_bad, s.info)
    w_loss, w_correct, w_seen = window.tolist()
    if first_bad.item() != NO_STEP:
        bad = int(first_bad.item())
        last = (f"; the last good checkpoint is {Path(s.cfg.out) / 'checkpoints' / 'last.pt'} "
                f"(epoch {len(s.history)})" if s.run is not None and s.history else "")
        if s.run is not None:
            s.run.write({"type": "stopped", "reason": "non-finite loss", "step": bad + 1, "epoch": epoch + 1})
        raise NonFiniteLoss(f"non-finite loss at step {bad + 1} (epoch {epoch + 1}, "
                            f"lr {s.cfg.lr * s.schedule.factor(bad):.3g}); training stopped"
                            f"{last}; {'resume' if last else 'start again'} with a lower --lr")
    totals = [a + b for a, b in zip(totals, (w_loss, w_correct, w_seen), strict=True)]
    s.schedule.observe_train_error(1.0 - w_correct / max(w_seen, 1.0))
    window.zero_()
    elapsed = time.perf_counter() - t0
    bar.set_postfix(epoch=f"{epoch + 1}/{s.epochs}", loss=f"{w_loss / max(w_seen, 1):.3f}",
                    acc=f"{totals[1] / max(totals[2], 1):.3f}",
                    img_s=f"{totals[2] / max(elapsed, 1e-9):.0f}", refresh=False)
    if s.run is not None:
        s.run.tb.scalars({"train/loss_step": w_loss / max(w_seen, 1), "lr": lr}, s.step)
    return totals


def end_epoch(s: Session, record: dict, bar, on_epoch_end) -> None:
    """Evaluate (every eval_every epochs and after the last), checkpoint, report."""
    epoch, t0 = record["epoch"], time.perf_counter()
    if epoch % s.cfg.eval_every == 0 or epoch == s.epochs:
        dist_utils.broadcast_buffers(s.model, s.info)
        result = evaluate(s.model, s.data, device=s.device, speed=s.speed)
        record.update(test_loss=result["loss"], test_acc=result["top1"], test_top5=result["top5"])
    record["time_s"] += time.perf_counter() - t0  # the epoch's training and evaluation
    s.history.append(record)
    is_best = record["test_acc"] is not None and record["test_acc"] > s.best_acc
    if is_best:
        s.best_acc = record["test_acc"]
    if s.run is not None:
        s.run.save_epoch(record, s.state(epoch), is_best)
    if s.info.is_main:
        line = epoch_line(record, s.epochs)
        log.info(line) if s.cfg.quiet else bar.write(line)
    if on_epoch_end is not None:
        on_epoch_end(s.model, record)


def _interrupted(s: Session, stop: StopRequest) -> Interrupted:
    if s.run is not None and s.history:
        kept = (f"kept {Path(s.cfg.out) / 'checkpoints' / 'last.pt'} (epoch {len(s.history)} of "
                f"{s.epochs}); continue with `cnnarch train --resume {s.cfg.out}`")
    elif s.run is not None:
        kept = "no epoch had finished, nothing to keep; run the same command again to start over"
    else:
        kept = "nothing is saved without a run folder (out)"
    return Interrupted(f"interrupted by {stop.name} at step {s.step}: {kept}", stop.requested)


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, *, batch_size: int = 500, device=None,
             speed: Speed | None = None) -> dict:
    """Top-1, top-5, mean loss, per-class accuracy and the confusion matrix (rows = true
    class, columns = predicted) on ``dataset``'s evaluation split. Under torchrun each rank
    evaluates its share and the counts are summed."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    info = dist_utils.DistInfo()
    if torch.distributed.is_initialized():
        info = dist_utils.DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size())
    speed = speed or Speed(None, False, False, False)
    was_training = model.training
    model.eval()
    k = dataset.num_classes
    confusion = torch.zeros(k * k, dtype=torch.int64, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, top-5 hits
    try:
        for x, y in dataset.eval_batches(batch_size, rank=info.rank, world=info.world_size,
                                         device=device):
            x, y = x.to(device), y.to(device)
            if speed.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=speed.amp_dtype or torch.float32,
                                enabled=speed.amp_dtype is not None):
                logits = model(x)
            logits = logits.float()
            top5 = logits.topk(min(5, k), dim=1).indices
            sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                                 (top5 == y[:, None]).any(1).sum().double()])
            confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
    finally:
        model.train(was_training)
    dist_utils.all_reduce_sum(confusion, info)
    dist_utils.all_reduce_sum(sums, info)
    conf = confusion.view(k, k).cpu()
    n = int(conf.sum())
    if n == 0:
        raise UserError(f"the {getattr(dataset, 'eval_split', 'test')} split is empty")
    support = conf.sum(1)
    per_class = [float(conf[i, i] / support[i]) if support[i] else None for i in range(k)]
    loss_sum, top5_hits = sums.tolist()
    return {"top1": float(conf.diag().sum()) / n, "top5": top5_hits / n, "loss": loss_sum / n,
            "per_class": per_class, "confusion": conf.tolist(), "n": n,
            "classes": list(dataset.classes), "split": getattr(dataset, "eval_split", "test")}
