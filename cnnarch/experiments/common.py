"""Shared pieces of the experiments: progress, formatting, training through
cnnarch.train. Claims, verdicts and the experiment registry live in ``claims.py``; the
context experiments run in, in ``context.py``.
"""

from __future__ import annotations

import math
import sys
import time

import torch

from ..train.threads import choose_threads  # noqa: F401 - re-exported for reproduce
from .scales import SCALES, Scale, get_scale  # noqa: F401 - re-exported


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def fmt_factor(x: float) -> str:
    if not math.isfinite(x):
        return "inf"
    return f"{x:,.3g}x" if x >= 1e-3 else f"{x:.2e}x"


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


def _channels_last(scale: Scale) -> str:
    return scale.channels_last or ("off" if scale.precision == "fp32" else "auto")


def train_model(model: str, scale: Scale, *, data: str, seed: int, model_kwargs=None,
                epochs: int | None = None, iterations: int = 0, batch_size: int | None = None,
                aux_weight: float = 0.3,
                on_epoch_end=None, data_dir=None, device: str = "auto", out: str | None = None,
                resume: str | None = None):
    """Train through cnnarch.train with the scale's settings (identical for every twin);
    ``out`` a run folder (None = nothing written), ``resume`` a run folder to continue."""
    from ..train import TrainConfig, train
    from ..train.config import paper_warmup_until_error

    milestones = list(scale.milestones)
    # Sec. 4.2: the 110-layer net starts at lr 0.01 until training error < 80 %, then 0.1.
    warm_until = paper_warmup_until_error(model) if scale.schedule == "step" else 0.0
    cfg = TrainConfig(model=model, model_kwargs=dict(model_kwargs or {}), data=data,
                      data_dir=data_dir, epochs=epochs or scale.epochs,
                      iterations=iterations if epochs else (iterations or scale.iterations),
                      batch_size=batch_size or scale.batch_size, optimizer="sgd", lr=scale.lr,
                      momentum=0.9, weight_decay=scale.weight_decay, schedule=scale.schedule,
                      milestones=milestones, milestone_unit=scale.milestone_unit,
                      warmup_epochs=scale.warmup_epochs, warmup_until_error=warm_until,
                      aux_weight=aux_weight, val_split=False,  # the paper's curves are on test
                      precision=scale.precision, channels_last=_channels_last(scale),
                      seed=seed, out=out, resume=resume, quiet=True, device=device, log_every=1000)
    torch.manual_seed(seed)
    result = train(cfg, on_epoch_end=on_epoch_end)
    return result.model.float().to(memory_format=torch.contiguous_format).cpu(), result.history


def errors(history: list[dict]) -> dict:
    """Per-epoch training and test error (fractions) from a train() history."""
    return {"train_error": [1.0 - h["train_acc"] for h in history],
            "test_error": [None if h["test_acc"] is None else 1.0 - h["test_acc"] for h in history]}
