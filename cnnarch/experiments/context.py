"""The context every experiment runs in: scale, data, seeds, device, progress, run folders,
and a cache through which experiments share what they trained.

``ctx.train(model, seed=..., tag=...)`` trains one network through ``cnnarch.train`` with
the scale's recipe. With ``runs_dir`` set, each run writes its run folder (checkpoints,
metrics, as ``cnnarch train`` does) to ``runs_dir/<tag>-seed<seed>``; a finished run
(``result.json`` present) is loaded instead of retrained, and an interrupted one resumes
from its last checkpoint. ``on_epoch`` callbacks return a dict of per-epoch extras, which is
stored in the run folder (keyed by epoch, so a resumed epoch overwrites its old entry) and
comes back with the run.

``ctx.per_seed(fn) -> {seed: result}`` runs ``fn(ctx, seed)`` once for every seed of the
context. ``fn`` must be a module-level function (it is sent to other processes by name) and
its result picklable (tensors and models on the CPU). With ``workers > 1`` the seeds run in
up to ``workers`` worker processes (started with ``spawn``, one intra-op thread each); each
worker rebuilds the context from its picklable fields (scale, data, data_dir, seeds, device,
runs_dir, models, iterations, control) and its progress lines reach this context's progress,
prefixed by the seed. With ``workers == 1`` the seeds run here, one after the other. Results
are memoised by (fn's module and qualified name, seed), so a second call returns them at
once. The worker processes stay up for later calls until ``ctx.close()``. A seed trained in a
worker gives the same numbers as in this process at one intra-op thread (the thread count
changes the order of floating-point sums, nothing else).

``ctx.twins(seed)`` trains plain-N and ResNet-N for every depth of the scale (the
degradation experiment's networks, reused by the residual, gradient and lesion experiments)
through ``per_seed``: the first call trains every seed's twins; ``ctx.memo(key, make)``
caches anything else.

``control`` (a key of ``claims.CONTROLS``) changes what is trained: ``random-labels`` trains
and evaluates on the data set with its labels permuted (``data_spec``, reaching
``cnnarch.train`` by name); ``untrained`` makes ``ctx.train`` return the network at
initialisation (0 optimizer steps; its BN layers hold their initial statistics), with a
one-record history measured on it; ``plain-twins`` and ``aux-weight-0`` are read by the
experiments that build those networks.
"""

from __future__ import annotations

import json
import queue as queue_module
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from .claims import CONTROLS
from .common import Progress, Scale, get_scale

# the fields a worker process rebuilds its Context from (picklable, no progress or cache)
WORKER_FIELDS = ("scale", "data", "data_dir", "seeds", "device", "runs_dir", "models",
                 "iterations", "control")
RANDOM_LABELS = "+random-labels"  # the data-set modifier of the random-labels control


@dataclass
class TrainedRun:
    model: torch.nn.Module
    history: list[dict]
    extras: dict  # epoch (int, 0 = before training when the caller adds it) -> dict
    run_dir: Path | None = None
    resumed: bool = False  # loaded or continued from a run folder


def _rng_untouched(net):
    """A probe between epochs runs on forked random streams: whatever it draws or reseeds,
    the training after it (dropout, augmentation) continues as without it."""
    device = next(net.parameters()).device
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


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
    workers: int = 1  # processes that per_seed runs seeds in (1 = this process)
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scale = get_scale(self.scale)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise UserError("at least one seed")
        if self.control and self.control not in CONTROLS:
            raise UserError(f"unknown control {self.control!r}; choose from {', '.join(CONTROLS)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise UserError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.runs_dir is not None:
            self.runs_dir = Path(self.runs_dir)
        if self.models is not None:
            self.models = tuple(self.models)
            bad = [m for m in self.models if not any(ch.isdigit() for ch in m)]
            if bad:
                raise UserError(f"--models names depths (20, resnet56, plain110), got {bad[0]!r}")

    @property
    def data_spec(self) -> str:
        """The data set name every run loads: ``data``, with its labels permuted under the
        random-labels control."""
        return self.data + RANDOM_LABELS if self.control == "random-labels" else self.data

    # -- shared things ------------------------------------------------------------------------

    def memo(self, key, make: Callable):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def dataset(self):
        from .common import load_data

        return self.memo(("dataset", self.data_spec), lambda: load_data(self.data_spec, self.data_dir))

    def depths(self) -> tuple[int, ...]:
        """The scale's twin depths, restricted by ``models`` (names like resnet20 or plain56,
        or bare depths like 20)."""
        if not self.models:
            return tuple(self.scale.depths)
        wanted = {int("".join(ch for ch in m if ch.isdigit())) for m in self.models
                  if any(ch.isdigit() for ch in m)}
        return tuple(d for d in self.scale.depths if d in wanted) or tuple(sorted(wanted))

    def twins(self, seed: int) -> dict:
        """{"runs": {"plain20": {...}, "resnet20": {...}, ...}, "dataset": ...} for one seed
        (every seed's twins are trained by the first call)."""
        from .degradation import train_twins

        return {"runs": self.per_seed(train_twins)[seed], "dataset": self.dataset()}

    # -- seeds in worker processes ------------------------------------------------------------

    def per_seed(self, fn: Callable) -> dict:
        """``{seed: fn(self, seed)}`` for every seed of the context, in up to ``workers``
        processes (see the module docstring); memoised by (fn, seed)."""
        name = f"{fn.__module__}.{fn.__qualname__}"
        if "<" in fn.__qualname__:  # a lambda or a local function cannot reach a worker by name
            raise UserError(f"per_seed needs a module-level function, got {name}")
        missing = [s for s in self.seeds if ("per_seed", name, s) not in self.cache]
        n = min(self.workers, len(missing))
        if n <= 1:
            for s in missing:
                self.cache[("per_seed", name, s)] = fn(self, s)
        else:
            fields = {k: getattr(self, k) for k in WORKER_FIELDS}
            for s, result in _pool(self, n).map_seeds(fn, fields, missing, self.progress):
                self.cache[("per_seed", name, s)] = result
        return {s: self.cache[("per_seed", name, s)] for s in self.seeds}

    def close(self) -> None:
        """Stop the worker processes (a later ``per_seed`` starts new ones)."""
        pool = self.cache.pop(_POOL_KEY, None)
        if pool is not None:
            pool.close()

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
        if self.control == "untrained":
            return self._untrained(model, seed=seed, model_kwargs=model_kwargs)
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
                with _rng_untouched(net):
                    extras[int(record["epoch"])] = on_epoch(net, record)
                if run_dir is not None:
                    atomic_write_text(run_dir / "extras.json", json.dumps(extras))

        if self.iterations and "iterations" not in overrides:
            overrides = dict(overrides, iterations=self.iterations)
        net, history = train_model(model, self.scale, data=self.data_spec, seed=seed,
                                   model_kwargs=model_kwargs, on_epoch_end=on_epoch_end,
                                   data_dir=self.data_dir, device=self.device,
                                   out=None if run_dir is None else str(run_dir), resume=resume,
                                   **overrides)
        if run_dir is not None:
            atomic_write_text(run_dir / "result.json",
                              json.dumps({"history": history, "extras": extras}) + "\n")
        return TrainedRun(net, history, extras, run_dir, resumed=resume is not None)

    def _untrained(self, model: str, *, seed: int, model_kwargs=None) -> TrainedRun:
        """The untrained control: ``model`` as ``cnnarch.train`` initialises it for ``seed``
        (0 optimizer steps), with one history record (epoch 0) of its accuracy on both splits."""
        from ..models import create_model
        from ..train.loop import evaluate, seed_everything

        ds = self.dataset()
        if not hasattr(ds, "train_images"):
            raise UserError(f"the untrained control needs an in-memory data set, not {self.data}")
        seed_everything(seed)
        net = create_model(model, **dict(model_kwargs or {}), num_classes=ds.num_classes,
                           in_chans=ds.in_chans).eval()
        test = evaluate(net, ds, device="cpu")
        with torch.no_grad():
            hits = sum(int((net(ds.normalize(ds.train_images[i:i + 500].cpu())).argmax(1)
                            == ds.train_labels[i:i + 500].cpu()).sum())
                       for i in range(0, ds.train_size, 500))
        record = {"type": "epoch", "epoch": 0, "step": 0, "train_loss": None,
                  "train_acc": hits / ds.train_size, "test_loss": test["loss"],
                  "test_acc": test["top1"], "test_top5": test["top5"], "eval_split": ds.eval_split}
        return TrainedRun(net, [record], {}, None, resumed=False)


# --- the worker pool ---------------------------------------------------------------------------

_POOL_KEY = ("per_seed", "pool")
_worker_queue = None  # in a worker: the queue its progress lines go to
_worker_datasets: dict = {}  # in a worker: data sets loaded by earlier tasks


class _QueueProgress(Progress):
    """A worker's progress: every line and every advance goes to the parent's queue."""

    def __init__(self, q, seed: int):
        super().__init__(enabled=True)
        self.q, self.seed = q, seed

    def say(self, text: str) -> None:
        self.q.put(("say", self.seed, text))

    def advance(self, units: float) -> None:
        self.q.put(("advance", self.seed, units))


def _init_worker(q) -> None:
    global _worker_queue
    from ..signals import leave_to_parent

    leave_to_parent()  # this process stops when the pool terminates it (_Pool.terminate)
    torch.set_num_threads(1)
    _worker_queue = q


def _run_seed(fn: Callable, fields: dict, seed: int):
    ctx = Context(**fields, progress=_QueueProgress(_worker_queue, seed))
    ctx.cache.update(_worker_datasets)
    try:
        return fn(ctx, seed)
    finally:
        _worker_datasets.update({k: v for k, v in ctx.cache.items()
                                 if isinstance(k, tuple) and k[0] == "dataset"})


class _Pool:
    """``workers`` spawned processes and the queue their progress comes back through."""

    def __init__(self, workers: int):
        import multiprocessing

        mp = multiprocessing.get_context("spawn")  # never fork a process whose torch has threads
        self.workers = workers
        self.q = mp.Queue()
        self.executor = ProcessPoolExecutor(workers, mp_context=mp, initializer=_init_worker,
                                            initargs=(self.q,))

    def map_seeds(self, fn: Callable, fields: dict, seeds: list[int], progress: Progress):
        """Yield (seed, fn(ctx, seed)) as the workers finish, forwarding their progress."""
        futures = {self.executor.submit(_run_seed, fn, fields, s): s for s in seeds}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                self._forward(progress)
                for f in done:
                    yield futures[f], f.result()
        except BaseException:  # a seed failed, or Ctrl-C: the other seeds' work is not waited for
            self.terminate()
            raise
        finally:
            self._forward(progress)

    def _forward(self, progress: Progress) -> None:
        while True:
            try:
                kind, seed, value = self.q.get_nowait()
            except queue_module.Empty:
                return
            if kind == "say":
                progress.say(f"seed {seed} | {value}")
            else:
                progress.advance(value)

    def terminate(self) -> None:
        """Stop every worker now (a run folder keeps its last checkpoint: writes are atomic)."""
        for proc in list((getattr(self.executor, "_processes", None) or {}).values()):
            proc.terminate()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.q.close()


def _pool(ctx: Context, workers: int) -> _Pool:
    pool = ctx.cache.get(_POOL_KEY)
    if pool is None or pool.workers < workers:
        if pool is not None:
            pool.close()
        pool = ctx.cache[_POOL_KEY] = _Pool(workers)
    return pool
