"""The training loop: one function, read top to bottom.

``train(config)`` sets up (devices, data, model, optimizer, run folder, resume), then for
each epoch runs the phases schedule -> forward/loss -> backward -> step -> log -> eval ->
checkpoint. ``evaluate(model, dataset)`` gives top-1/top-5, loss, per-class accuracy and
the confusion matrix.

Exactness: every random stream (torch, numpy, python, the data/augmentation generator) is
seeded from ``config.seed`` and saved in each checkpoint with the optimizer, grad scaler
and schedule state, so on CPU a run stopped after epoch k and resumed ends with bitwise
the same weights and metrics as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from . import distributed as dist_utils
from .batchnorm import batchnorm_for_compile
from .checkpoint import (
    FORMAT,
    VERSION,
    RunLock,
    atomic_write_text,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig, to_toml
from .logging import MetricsFile, TensorBoard, epoch_line, progress_bar
from .optim import FusedSGD
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


@dataclass(frozen=True)
class Speed:
    """The resolved speed options (what "auto" became on this device)."""

    amp_dtype: torch.dtype | None  # autocast dtype, None = fp32
    grad_scaler: bool  # fp16 needs loss scaling
    channels_last: bool
    compile: bool

    def describe(self) -> dict:
        dtype = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return {"precision": dtype, "channels_last": self.channels_last, "compile": self.compile}


def cpu_has_bf16() -> bool:
    """Native bf16 matmul/conv on this CPU (AVX512-BF16 / AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover
        return False


def resolve_speed(cfg: TrainConfig, device: torch.device, image_size: tuple[int, int]) -> Speed:
    """Turn ``precision``/``channels_last`` "auto" into the measured safe fast choice.

    auto precision: bf16 autocast on CUDA (fp16 + GradScaler where bf16 is missing) and on
    CPUs with native bf16 (AVX512-BF16/AMX); fp32 elsewhere. auto channels_last: on for CPU
    and CUDA. Measured on a 2-core Sapphire Rapids CPU, resnet20 training step, batch 128:
    8x8 digits fp32 NCHW 5.2k img/s, bf16 + channels_last 7.2k; 32x32 561 vs 1143 img/s
    (see docs/benchmarks_train.json). ``image_size`` is kept for devices where the answer
    depends on it.
    """
    del image_size
    if cfg.precision == "auto":
        if device.type == "cuda":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "cpu" and cpu_has_bf16():
            amp = torch.bfloat16
        else:
            amp = None
    else:
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
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
    step where PyTorch has it (CPU and CUDA): a ResNet-56 step on the 2-core CPU does ~420
    small per-parameter updates otherwise. Measured (bf16 autocast, channels_last, batch 128):
    360 -> 400 img/s; in fp32 equal within noise (benchmarks/train_speed.py). SGD's fused step
    also skips the copies PyTorch makes of channels_last weights (train/optim.py)."""
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


def _prepare_run_dir(cfg: TrainConfig, info) -> tuple[Path | None, RunLock | None, str | None]:
    """Rank 0: create and lock the run folder. Returns (dir, lock, error message)."""
    if cfg.out is None or not info.is_main:
        return (Path(cfg.out) if cfg.out else None), None, None
    run_dir = Path(cfg.out)
    if run_dir.exists() and not run_dir.is_dir():
        return None, None, f"--out {run_dir} exists and is not a folder"
    try:
        lock = RunLock(run_dir).acquire()
    except UserError as exc:
        return None, None, str(exc)
    except OSError as exc:
        return None, None, f"cannot create run folder {run_dir}: {exc.strerror or exc}"
    if cfg.resume is None and (run_dir / "checkpoints" / "last.pt").exists():
        lock.release()
        return None, None, (f"run folder {run_dir} already holds a run; continue it with "
                            f"--resume {run_dir} or choose another --out")
    for tmp in [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]:
        tmp.unlink(missing_ok=True)  # half-written by a killed run (we hold the lock)
    return run_dir, lock, None


def train(config: TrainConfig, *, on_epoch_end=None) -> TrainResult:
    """Train ``config.model`` on ``config.data`` (see TrainConfig); returns the trained model,
    the per-epoch history and the run folder."""
    from ..data import load_dataset
    from ..models import GoogLeNetOutputs, create_model, googlenet_loss

    cfg = config
    started_group = not torch.distributed.is_initialized()
    info, device = dist_utils.setup(cfg.device)
    started_group = started_group and info.enabled
    lock = metrics = tb = bar = restore_bn = None
    try:
        # ---- setup: run folder (rank 0 writes; every rank learns the outcome) --------------
        dist_utils.check_batch(cfg.batch_size, info)
        if cfg.out is None and cfg.resume and Path(cfg.resume).is_dir():
            cfg = cfg.replace(out=cfg.resume)  # continue writing into the resumed run folder
        cfg = cfg.replace(out=dist_utils.broadcast_object(cfg.out, info))
        run_dir, lock, err = _prepare_run_dir(cfg, info)
        err = dist_utils.broadcast_object(err, info)
        if err:
            raise UserError(err)
        resume_state = load_checkpoint(find_checkpoint(cfg.resume)) if cfg.resume else None

        # ---- setup: data, model, optimizer, schedule ---------------------------------------
        seed_everything(cfg.seed)
        if not info.is_main:  # rank 0 downloads/extracts first; the others then read its copy
            dist_utils.barrier(info)
        data = load_dataset(cfg.data, data_dir=cfg.data_dir, download=cfg.download and info.is_main,
                            val_split=cfg.val_split, seed=cfg.seed, device=device,
                            image_size=cfg.image_size, workers=cfg.workers)
        if info.is_main:
            dist_utils.barrier(info)
        steps_per_epoch = data.steps_per_epoch(cfg.batch_size)
        if steps_per_epoch == 0:
            raise UserError(f"batch_size {cfg.batch_size} is larger than the training split "
                            f"({len(data.train_labels) if hasattr(data, 'train_labels') else '?'} images)")
        total_steps = cfg.iterations or cfg.epochs * steps_per_epoch
        epochs = math.ceil(total_steps / steps_per_epoch)
        model_kwargs = {**cfg.model_kwargs, "num_classes": data.num_classes, "in_chans": data.in_chans}
        model = create_model(cfg.model, **model_kwargs).to(device)
        speed = resolve_speed(cfg, device, data.image_size)
        if speed.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(cfg, model)
        scaler = torch.amp.GradScaler(device.type, enabled=speed.grad_scaler)
        schedule = LRSchedule.from_config(cfg, steps_per_epoch, total_steps)
        generator = torch.Generator(device=getattr(data, "device", torch.device("cpu")))
        generator.manual_seed(cfg.seed)

        def criterion(logits, y):
            return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)

        meta = {"model": cfg.model, "model_kwargs": dict(cfg.model_kwargs),
                "num_classes": data.num_classes, "in_chans": data.in_chans,
                "input_size": [data.in_chans, *data.image_size], "mean": list(data.mean),
                "std": list(data.std), "classes": list(data.classes), "dataset": cfg.data,
                "eval_split": data.eval_split, "transform": data.eval_transform.to_dict()}

        # ---- setup: resume -----------------------------------------------------------------
        start_epoch, step, history, best_acc = 0, 0, [], -1.0
        if resume_state is not None:
            saved = resume_state["meta"]
            if saved["model"] != cfg.model or saved.get("model_kwargs", {}) != cfg.model_kwargs:
                raise UserError(f"checkpoint {cfg.resume} is for {saved['model']} "
                                f"{saved.get('model_kwargs', {})}, not {cfg.model} {cfg.model_kwargs}")
            if saved["num_classes"] != data.num_classes or saved["in_chans"] != data.in_chans:
                raise UserError(f"checkpoint {cfg.resume} was trained on {saved.get('dataset')}, "
                                f"which does not fit {cfg.data}")
            try:
                model.load_state_dict(resume_state["model"])
            except RuntimeError as exc:
                raise UserError(f"checkpoint {cfg.resume} does not match {cfg.model}: "
                                f"{str(exc).splitlines()[0]}") from None
            optimizer.load_state_dict(resume_state["optimizer"])
            for group in optimizer.param_groups:  # a resumed run may change these (e.g. lower lr)
                group.update(weight_decay=cfg.weight_decay)
                if "momentum" in group:
                    group["momentum"] = cfg.momentum
            if speed.grad_scaler and resume_state.get("scaler"):
                scaler.load_state_dict(resume_state["scaler"])
            schedule.load_state_dict(resume_state.get("schedule", {}))
            set_rng_state(resume_state["rng"], generator)
            start_epoch, step = int(resume_state["epoch"]), int(resume_state["step"])
            history = list(resume_state.get("history", []))
            best_acc = float(resume_state.get("best_acc", -1.0))
            del resume_state

        train_model = dist_utils.wrap(model, info, device, cfg.sync_bn)
        if cfg.sync_bn and info.enabled:
            model = train_model.module  # SyncBatchNorm replaced the BN layers
        if speed.compile:
            restore_bn = batchnorm_for_compile(model, device)  # see train/batchnorm.py
            train_model = torch.compile(train_model)

        # ---- setup: outputs ----------------------------------------------------------------
        if run_dir is not None and info.is_main:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.toml", to_toml(cfg.replace(resume=None)))
            MetricsFile.rewrite(run_dir / "metrics.jsonl", history)
            metrics = MetricsFile(run_dir / "metrics.jsonl")
            tb = TensorBoard(run_dir, purge_step=step if step else None)
        bar = progress_bar(total_steps, step, enabled=info.is_main and not cfg.quiet)
        autocast = lambda: torch.autocast(device.type, dtype=speed.amp_dtype or torch.float32,  # noqa: E731
                                          enabled=speed.amp_dtype is not None)

        def checkpoint_state(epoch: int) -> dict:
            return {"format": FORMAT, "version": VERSION, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "schedule": schedule.state_dict(), "epoch": epoch, "step": step,
                    "rng": rng_state(generator), "config": cfg.replace(resume=None).to_dict(),
                    "meta": meta, "history": history, "best_acc": best_acc,
                    "speed": speed.describe()}

        for epoch in range(start_epoch, epochs):
            train_model.train()
            t0 = time.perf_counter()
            window = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, seen
            first_bad = torch.full((), NO_STEP, dtype=torch.int64, device=device)
            step_t = torch.full((), step, dtype=torch.int64, device=device)  # no host->device copy per step
            totals = [0.0, 0.0, 0.0]
            steps_this_epoch = 0
            batches = data.train_batches(cfg.batch_size, generator, rank=info.rank,
                                         world=info.world_size, epoch=epoch, device=device)
            for x, y in batches:
                if step >= total_steps:
                    break
                # -- schedule
                lr = cfg.lr * schedule.factor(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # -- forward / loss (GoogLeNet: main + aux_weight x (aux1 + aux2), training only)
                if speed.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast():
                    out = train_model(x)
                    loss = googlenet_loss(out, y, criterion, aux_weight=cfg.aux_weight)
                logits = out.logits if isinstance(out, GoogLeNetOutputs) else out
                # -- backward / step
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                # -- log (tensors only; the host syncs every log_every steps)
                loss_d = loss.detach()
                first_bad = torch.where(~torch.isfinite(loss_d) & (first_bad == NO_STEP), step_t, first_bad)
                window[0] += loss_d.double() * len(y)
                window[1] += (logits.detach().argmax(1) == y).sum()
                window[2] += len(y)
                step += 1
                step_t += 1
                steps_this_epoch += 1
                bar.update(1)
                if step % cfg.log_every and step < total_steps and steps_this_epoch < steps_per_epoch:
                    continue
                dist_utils.all_reduce_sum(window, info)
                dist_utils.all_reduce_min(first_bad, info)
                w_loss, w_correct, w_seen = window.tolist()
                if first_bad.item() != NO_STEP:
                    bad = int(first_bad.item())
                    last = (f"; the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'} "
                            f"(epoch {len(history)})" if run_dir is not None and history else "")
                    if metrics is not None:
                        metrics.write({"type": "stopped", "reason": "non-finite loss", "step": bad + 1,
                                       "epoch": epoch + 1})
                    raise NonFiniteLoss(f"non-finite loss at step {bad + 1} (epoch {epoch + 1}, "
                                        f"lr {cfg.lr * schedule.factor(bad):.3g}); training stopped"
                                        f"{last}; {'resume' if last else 'start again'} with a lower --lr")
                totals = [a + b for a, b in zip(totals, (w_loss, w_correct, w_seen), strict=True)]
                schedule.observe_train_error(1.0 - w_correct / max(w_seen, 1.0))
                window.zero_()
                elapsed = time.perf_counter() - t0
                bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{w_loss / max(w_seen, 1):.3f}",
                                acc=f"{totals[1] / max(totals[2], 1):.3f}",
                                img_s=f"{totals[2] / max(elapsed, 1e-9):.0f}", refresh=False)
                if tb is not None:
                    tb.scalars({"train/loss_step": w_loss / max(w_seen, 1), "lr": lr}, step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time = time.perf_counter() - t0
            epoch_done = epoch + 1

            # -- eval (every eval_every epochs and after the last one)
            record = {"type": "epoch", "epoch": epoch_done, "step": step,
                      "train_loss": totals[0] / max(totals[2], 1), "train_acc": totals[1] / max(totals[2], 1),
                      "test_loss": None, "test_acc": None, "test_top5": None, "eval_split": data.eval_split,
                      "lr": cfg.lr * schedule.factor(max(step - 1, 0)),
                      "img_per_s": totals[2] / max(train_time, 1e-9), "time_s": train_time}
            if epoch_done % cfg.eval_every == 0 or epoch_done == epochs:
                dist_utils.broadcast_buffers(model, info)
                result = evaluate(model, data, device=device, speed=speed)
                record.update(test_loss=result["loss"], test_acc=result["top1"], test_top5=result["top5"])
            record["time_s"] = time.perf_counter() - t0
            history.append(record)

            # -- checkpoint (rank 0; last.pt every epoch, best.pt on a new best test/val top-1)
            is_best = record["test_acc"] is not None and record["test_acc"] > best_acc
            if is_best:
                best_acc = record["test_acc"]
            if run_dir is not None and info.is_main:
                metrics.write(record)
                state = checkpoint_state(epoch_done)
                if is_best:  # best.pt first: killed in between, the resume redoes this epoch
                    save_checkpoint(run_dir / "checkpoints" / "best.pt", state)
                save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
                tb.scalars({k: v for k, v in record.items() if k not in ("type", "epoch", "step")},
                           epoch_done, prefix="epoch/")
            if info.is_main:
                line = epoch_line(record, epochs)
                if cfg.quiet:
                    log.info(line)
                else:
                    bar.write(line)
            if on_epoch_end is not None:
                on_epoch_end(model, record)

        # ---- done: final full evaluation record --------------------------------------------
        if run_dir is not None and history:
            final = evaluate(model, data, device=device, speed=speed)  # every rank: it all-reduces
        if run_dir is not None and history and info.is_main:
            metrics.write({"type": "final", "epoch": len(history), "step": step,
                           **{k: final[k] for k in ("top1", "top5", "loss", "per_class", "n", "split")}})
        model.eval()
        return TrainResult(model, history, run_dir)
    finally:
        if restore_bn is not None:
            restore_bn()
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()
        if tb is not None:
            tb.close()
        if lock is not None:
            lock.release()
        if started_group:
            dist_utils.cleanup()


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
