"""Shared pieces of the experiments: scales, progress, formatting, training through
cnnarch.train. Claims, verdicts and the experiment registry live in ``claims.py``; the
context experiments run in, in ``context.py``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch

from ..train.threads import choose_threads  # noqa: F401 - re-exported for reproduce


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def fmt_factor(x: float) -> str:
    if not math.isfinite(x):
        return "inf"
    return f"{x:,.3g}x" if x >= 1e-3 else f"{x:.2e}x"


@dataclass(frozen=True)
class Scale:
    """What one scale runs (quick: the `make demo` budget on 2 CPU cores; full: the paper)."""

    name: str
    depths: tuple[int, ...]  # CIFAR-family depths of the degradation twins
    epochs: int  # degradation / residual training
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str  # cosine | step
    milestones: tuple[int, ...] = ()  # for schedule "step", in milestone_unit
    milestone_unit: str = "epoch"  # epoch | iteration
    iterations: int = 0  # > 0: twins train for this many optimizer steps instead of epochs
    warmup_epochs: float = 1.0
    aux_epochs: int = 5  # GoogLeNet with / without aux heads (5: 97.5 % on digits, docs/reproduce.md)
    aux_iterations: int = 0  # > 0: that many optimizer steps instead of aux_epochs
    aux_batch_size: int = 64
    aux_lr: float = 0.05  # googlenet_small's peak lr (SGD, momentum 0.9, cosine)
    aux_warmup_epochs: float = 0.5
    aux_no_bn: bool = False  # also train the 2014 setting (no BN, the 0.01-std init) for G5
    lesion_max_removed: int = 4  # B2: up to this many blocks deleted at once
    lesion_subsets: int = 2  # B2: random sets of blocks per count
    preact_trained: bool = False  # B1: train preact-20 shortcut variants and preact-56
    probe_images: int = 256  # images for the gradient / response / ratio probes
    jacobian_blocks: int = 6  # identity blocks per model whose Jacobian is measured
    timing_repeats: int = 5
    precision: str = "fp32"
    seeds: int = 1  # default number of seeds of every trained measurement (--seeds)
    run_folders: bool = False  # write each trained model's run folder under the report's folder
    extra: dict = field(default_factory=dict)


SCALES = {
    # quick: the paper's lr 0.1 at batch 128, scaled linearly to batch 64 (more steps in the
    # budget); 15 epochs = 330 steps, enough for ResNet-56 to converge on digits (10 were not:
    # it ended at 11 % training error). googlenet_small costs ~12x a ResNet-56 per image and
    # needs 5 epochs (~2 min per run on one idle core) to reach 97 %: quick measures G5 at
    # init only (aux_epochs 0), the trained parts run at the larger scales.
    "quick": Scale("quick", depths=(20, 56), epochs=15, batch_size=64, lr=0.05, weight_decay=1e-4,
                   schedule="cosine", warmup_epochs=1.0, aux_epochs=0, aux_iterations=0, aux_batch_size=64,
                   probe_images=256, jacobian_blocks=4, timing_repeats=3, seeds=3),
    # The paper's CIFAR recipe (Sec. 4.2): SGD 0.1, momentum 0.9, wd 1e-4, batch 128, lr / 10 at
    # 32k and 48k iterations, stop at 64k (~164 epochs on 50k images).
    "full": Scale("full", depths=(20, 32, 44, 56, 110), epochs=164, batch_size=128, lr=0.1,
                  weight_decay=1e-4, schedule="step", milestones=(32000, 48000),
                  milestone_unit="iteration", iterations=64000, warmup_epochs=0.0,
                  aux_epochs=164, aux_iterations=64000, aux_batch_size=128, aux_lr=0.1, aux_warmup_epochs=0.0,
                  aux_no_bn=True, lesion_max_removed=20, lesion_subsets=20,
                  preact_trained=True, probe_images=1000, jacobian_blocks=12,
                  timing_repeats=10, precision="auto", seeds=1, run_folders=True),
}


def get_scale(name: str | Scale) -> Scale:
    if isinstance(name, Scale):
        return name
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}")
    return SCALES[name]


class Progress:
    """Prints which experiment and model is running, with elapsed time and an ETA from the
    planned amount of work (in arbitrary units, e.g. image-epochs x MACs)."""

    def __init__(self, total_units: float = 0.0, stream=None, enabled: bool = True):
        self.total = float(total_units)
        self.done = 0.0
        self.t0 = time.perf_counter()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.experiment = ""

    def start(self, experiment: str) -> None:
        self.experiment = experiment
        self.say(f"== {experiment}")

    def say(self, text: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.t0
            eta = ""
            if self.total > 0 and self.done > 0:
                rest = elapsed * (self.total - self.done) / self.done
                eta = f", ETA {max(rest, 0):.0f} s"
            print(f"[{elapsed:6.1f} s{eta}] {text}", file=self.stream, flush=True)

    def advance(self, units: float) -> None:
        self.done += units


def probe_batch(data, n: int, split: str = "train"):
    """The first ``n`` images (normalised) and labels of a split: a fixed, real batch."""
    images = data.train_images if split == "train" else data.test_images
    labels = data.train_labels if split == "train" else data.test_labels
    return data.normalize(images[:n]).cpu(), labels[:n].cpu()


def load_data(name: str, data_dir=None, download: bool = False):
    from ..data import load_dataset

    return load_dataset(name, data_dir=data_dir, download=download)


def train_model(model: str, scale: Scale, *, data: str, seed: int, model_kwargs=None,
                epochs: int | None = None, iterations: int = 0, batch_size: int | None = None,
                aux_weight: float = 0.3,
                on_epoch_end=None, data_dir=None, device: str = "auto", out: str | None = None,
                resume: str | None = None):
    """Train through cnnarch.train with the scale's settings (identical for every twin);
    ``out`` a run folder (None = nothing written), ``resume`` a run folder to continue."""
    from ..train import TrainConfig, train

    milestones = list(scale.milestones)
    digits = "".join(ch for ch in model if ch.isdigit())
    # Sec. 4.2: the 110-layer net starts at lr 0.01 until training error < 80 %, then 0.1.
    warm_until = 0.8 if scale.schedule == "step" and digits and int(digits) >= 110 else 0.0
    cfg = TrainConfig(model=model, model_kwargs=dict(model_kwargs or {}), data=data,
                      data_dir=data_dir, epochs=epochs or scale.epochs,
                      iterations=iterations if epochs else (iterations or scale.iterations),
                      batch_size=batch_size or scale.batch_size, optimizer="sgd", lr=scale.lr,
                      momentum=0.9, weight_decay=scale.weight_decay, schedule=scale.schedule,
                      milestones=milestones, milestone_unit=scale.milestone_unit,
                      warmup_epochs=scale.warmup_epochs, warmup_until_error=warm_until,
                      aux_weight=aux_weight, val_split=False,  # the paper's curves are on test
                      precision=scale.precision, channels_last="off" if scale.precision == "fp32" else "auto",
                      seed=seed, out=out, resume=resume, quiet=True, device=device, log_every=1000)
    torch.manual_seed(seed)
    result = train(cfg, on_epoch_end=on_epoch_end)
    return result.model.float().to(memory_format=torch.contiguous_format).cpu(), result.history


def errors(history: list[dict]) -> dict:
    """Per-epoch training and test error (fractions) from a train() history."""
    return {"train_error": [1.0 - h["train_acc"] for h in history],
            "test_error": [None if h["test_acc"] is None else 1.0 - h["test_acc"] for h in history]}
