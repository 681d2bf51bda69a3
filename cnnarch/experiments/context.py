"""The context every experiment runs in: scale, data, seeds, device, progress, run folders,
and a cache through which experiments share what they trained.

``ctx.train(model, seed=..., tag=...)`` trains one network through ``cnnarch.train`` with
the scale's recipe. With ``runs_dir`` set, each run writes its run folder (checkpoints,
metrics, as ``cnnarch train`` does) to ``runs_dir/<tag>-seed<seed>``; a finished run
(``result.json`` present) is loaded instead of retrained, and an interrupted one resumes
from its last checkpoint. ``on_epoch`` callbacks return a dict of per-epoch extras, which is
stored in the run folder (keyed by epoch, so a resumed epoch overwrites its old entry) and
comes back with the run.

``ctx.twins(seed)`` trains plain-N and ResNet-N for every depth of the scale once per seed
(the degradation experiment's networks, reused by the residual, gradient and lesion
experiments); ``ctx.memo(key, make)`` caches anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .claims import CONTROLS
from .common import Progress, Scale, get_scale


@dataclass
class TrainedRun:
    model: torch.nn.Module
    history: list[dict]
    extras: dict  # epoch (int, 0 = before training when the caller adds it) -> dict
    run_dir: Path | None = None
    resumed: bool = False  # loaded or continued from a run folder


@dataclass
class Context:
    scale: Scale
    data: str = "digits"
    data_dir: str | None = None
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    runs_dir: Path | None = None  # run folders of every trained model (None = memory only)
    models: tuple[str, ...] | None = None  # restrict trained depths/variants (None = the scale's)
    iterations: int = 0  # > 0: every trained run stops after this many optimizer steps
    control: str = ""  # a negative control that changes what is trained (claims.CONTROLS)
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scale = get_scale(self.scale)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("at least one seed")
        if self.control and self.control not in CONTROLS:
            raise ValueError(f"unknown control {self.control!r}; choose from {', '.join(CONTROLS)}")
        if self.runs_dir is not None:
            self.runs_dir = Path(self.runs_dir)

    # -- shared things ------------------------------------------------------------------------

    def memo(self, key, make: Callable):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def dataset(self):
        from .common import load_data

        return self.memo(("dataset", self.data), lambda: load_data(self.data, self.data_dir))

    def depths(self) -> tuple[int, ...]:
        """The scale's twin depths, restricted by ``models`` (names like resnet20 or plain56,
        or bare depths like 20)."""
        if not self.models:
            return tuple(self.scale.depths)
        wanted = {int("".join(ch for ch in m if ch.isdigit())) for m in self.models
                  if any(ch.isdigit() for ch in m)}
        return tuple(d for d in self.scale.depths if d in wanted) or tuple(sorted(wanted))

    def twins(self, seed: int) -> dict:
        """{"runs": {"plain20": {...}, "resnet20": {...}, ...}, "dataset": ...} for one seed."""
        from .degradation import train_twins

        return self.memo(("twins", seed), lambda: train_twins(self, seed))

    # -- training -----------------------------------------------------------------------------

    def run_dir(self, tag: str, seed: int) -> Path | None:
        return None if self.runs_dir is None else self.runs_dir / f"{tag}-seed{seed}"

    def train(self, model: str, *, seed: int, tag: str | None = None, model_kwargs=None,
              on_epoch: Callable | None = None, **overrides) -> TrainedRun:
        """Train ``model`` with the scale's recipe (``overrides``: train_model's keywords,
        e.g. epochs, iterations, batch_size, aux_weight). ``on_epoch(model, record) -> dict``
        adds per-epoch extras."""
        from ..train.checkpoint import atomic_write_text, load_model
        from .common import train_model

        tag = tag or model
        run_dir = self.run_dir(tag, seed)
        if run_dir is not None and (run_dir / "result.json").is_file():
            done = json.loads((run_dir / "result.json").read_text())
            net, _ = load_model(run_dir)
            extras = {int(k): v for k, v in done.get("extras", {}).items()}
            return TrainedRun(net.float().cpu(), done["history"], extras, run_dir, resumed=True)
        extras: dict[int, dict] = {}
        resume = None
        if run_dir is not None:
            if (run_dir / "extras.json").is_file():
                extras = {int(k): v for k, v in json.loads((run_dir / "extras.json").read_text()).items()}
            if (run_dir / "checkpoints" / "last.pt").is_file():
                resume = str(run_dir)

        def on_epoch_end(net, record):
            if on_epoch is not None:
                extras[int(record["epoch"])] = on_epoch(net, record)
                if run_dir is not None:
                    atomic_write_text(run_dir / "extras.json", json.dumps(extras))

        if self.iterations and "iterations" not in overrides:
            overrides = dict(overrides, iterations=self.iterations)
        net, history = train_model(model, self.scale, data=self.data, seed=seed,
                                   model_kwargs=model_kwargs, on_epoch_end=on_epoch_end,
                                   data_dir=self.data_dir, device=self.device,
                                   out=None if run_dir is None else str(run_dir), resume=resume,
                                   **overrides)
        if run_dir is not None:
            atomic_write_text(run_dir / "result.json",
                              json.dumps({"history": history, "extras": extras}) + "\n")
        return TrainedRun(net, history, extras, run_dir, resumed=resume is not None)
