"""The run folder: what is ours, the lock, and the order files are written in.

Layout: ``config.toml``, ``metrics.jsonl``, ``checkpoints/{last,best}.pt``,
``tensorboard/``, ``.lock``. A folder is a run folder when it holds one of our
checkpoints or a ``config.toml`` we wrote (its first line is our header); ``--out``
naming any other non-empty folder is refused before anything is written, so a user's
files are never replaced. Only our own half-written temporaries (``.last.pt.*.tmp`` and
the like, regular files) are swept, under the lock.

Each epoch writes ``best.pt`` (when it is a new best), then ``last.pt``, then its
``metrics.jsonl`` line: the history on disk never runs ahead of the checkpoints. On a
resume from an earlier checkpoint than the history holds (e.g. ``last.pt`` lost,
``best.pt`` kept), the later lines are moved aside to ``metrics.jsonl.superseded-N``,
never rewritten away.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import UserError
from .checkpoint import (
    RunLock,
    atomic_write_bytes,
    atomic_write_text,
    save_checkpoint,
    storage_error,
)
from .config import TOML_HEADER, TrainConfig, to_toml
from .logging import MetricsFile, TensorBoard, read_metrics

PLACEHOLDERS = {".lock": False, "checkpoints": True, "tensorboard": True}  # name: is a folder


def _temporary(entry: Path, names) -> bool:
    """One of our own half-written files: ``.NAME.XXXXXXXX.tmp`` (tempfile.mkstemp's pattern)."""
    return entry.is_file() and not entry.is_symlink() and any(
        re.fullmatch(rf"\.{re.escape(n)}\.[a-z0-9_]{{8}}\.tmp", entry.name) for n in names)


def _placeholder(entry: Path) -> bool:
    """What a run leaves before its first whole file: the lock, our temporaries, folders of them."""
    if _temporary(entry, OUR_TEMPORARIES["."]):
        return True
    if entry.name not in PLACEHOLDERS or entry.is_symlink():
        return False
    if PLACEHOLDERS[entry.name]:
        return entry.is_dir() and all(_temporary(e, OUR_TEMPORARIES["checkpoints"]) for e in entry.iterdir())
    return entry.is_file()
OUR_TEMPORARIES = {".": ("config.toml", "metrics.jsonl"), "checkpoints": ("last.pt", "best.pt")}


def is_run_folder(path: Path) -> bool:
    if any((path / "checkpoints" / f"{n}.pt").is_file() for n in ("last", "best")):
        return True
    toml = path / "config.toml"
    if not toml.is_file():  # a FIFO there would block the read for ever
        return False
    try:
        with open(toml, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == TOML_HEADER
    except OSError:
        return False


def check_out(path: Path, *, resuming: bool) -> None:
    """Refuse an --out that is a file, someone else's non-empty folder, or (for a fresh run) a
    run folder that already holds a run. Writes nothing."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise UserError(f"--out {path} exists and is not a folder")
    if all(_placeholder(e) for e in path.iterdir()):
        return  # empty, or only what a run starting here creates first (its lock, empty folders)
    if not is_run_folder(path):
        raise UserError(f"--out {path} is a folder that is not empty and not a cnnarch run folder; "
                        "choose a new or empty folder (nothing was written)")
    RunLock(path).check_free()  # "in use by another process" says more than what follows
    if not resuming and (path / "checkpoints" / "last.pt").exists():
        raise UserError(f"run folder {path} already holds a run; continue it with --resume {path} "
                        "or choose another --out")


class RunFolder:
    """The open run folder of rank 0: lock held, metrics and TensorBoard writers open."""

    def __init__(self, path: Path):
        self.path = path
        self.lock: RunLock | None = None
        self.metrics: MetricsFile | None = None
        self.tb = TensorBoard(None)

    def open(self, cfg: TrainConfig, history: list[dict], step: int) -> list[str]:
        """Lock, sweep, write config.toml and the history; -> notices to print."""
        try:
            self.lock = RunLock(self.path).acquire()
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise (storage_error(exc, self.path)
                   or UserError(f"cannot create run folder {self.path}: {exc.strerror or exc}")) from None
        self._sweep()
        notices = self._branch_from(cfg.resume) if cfg.resume else []
        atomic_write_text(self.path / "config.toml", to_toml(cfg.replace(resume=None)))
        notices += self._keep_later_records(len(history))
        MetricsFile.rewrite(self.path / "metrics.jsonl", history)
        self.metrics = MetricsFile(self.path / "metrics.jsonl")
        self.tb = TensorBoard(self.path, purge_step=step if step else None)
        return notices

    def _branch_from(self, resume: str) -> list[str]:
        """A resume of run A into another ``--out`` B: B first gets the checkpoint resumed from
        (as ``last.pt``; A's ``best.pt`` too when it is not later than that), so B's history
        never runs ahead of its checkpoints and B resumes on its own; A is only read. A B that
        already holds a run is refused."""
        from .checkpoint import find_checkpoint
        from .resume import run_folder_of

        source = run_folder_of(resume)
        if source.resolve() == self.path.resolve():
            return []
        if any((self.path / "checkpoints" / f"{n}.pt").exists() for n in ("last", "best")):
            raise UserError(f"--out {self.path} already holds a run; resuming {source} into another "
                            "folder needs a new or empty one (nothing was written)")
        start = find_checkpoint(resume)
        best = source / "checkpoints" / "best.pt"
        copies = {"last.pt": start}
        if start.name == "best.pt" or (start.name == "last.pt" and best.is_file()):
            copies["best.pt"] = best if start.name == "last.pt" else start
        for name, src in copies.items():
            with open(src, "rb") as f:
                atomic_write_bytes(self.path / "checkpoints" / name, lambda out, f=f: shutil.copyfileobj(f, out))
        return [f"continuing {source} in {self.path}: copied {', '.join(str(p) for p in copies.values())} "
                f"first; {source} is left as it was"]

    def _sweep(self) -> None:
        for sub, names in OUR_TEMPORARIES.items():
            folder = self.path / sub
            for name in names:
                for tmp in folder.glob(f".{name}.*.tmp"):
                    if _temporary(tmp, (name,)):  # half-written by a killed run
                        tmp.unlink(missing_ok=True)

    def _keep_later_records(self, epochs_kept: int) -> list[str]:
        path = self.path / "metrics.jsonl"
        try:
            records = read_metrics(path) if path.is_file() and not path.is_symlink() else []
        except (OSError, ValueError):
            records = []
        later = [r for r in records if r.get("type") == "epoch" and int(r.get("epoch", 0)) > epochs_kept]
        if not later:
            return []
        n = 1
        while (aside := path.with_name(f"metrics.jsonl.superseded-{n}")).exists():
            n += 1
        os.replace(path, aside)
        return [f"metrics.jsonl held epochs {epochs_kept + 1}-{later[-1]['epoch']}, which the "
                f"checkpoint resumed from does not; moved them to {aside}"]

    def save_epoch(self, record: dict, state: dict, is_best: bool) -> None:
        """best.pt (new best), last.pt, then the metrics line: never history ahead of state."""
        if is_best:  # best.pt first: killed in between, the resume redoes this epoch
            save_checkpoint(self.path / "checkpoints" / "best.pt", state)
        save_checkpoint(self.path / "checkpoints" / "last.pt", state)
        self.write(record)
        self.tb.scalars({k: v for k, v in record.items() if k not in ("type", "epoch", "step")},
                        record["epoch"], prefix="epoch/")

    def write(self, record: dict) -> None:
        if self.metrics is not None:
            try:
                self.metrics.write(record)
            except OSError as exc:
                raise (storage_error(exc, self.metrics.path) or exc) from None

    def close(self) -> None:
        for closer in (self.metrics, self.tb, self.lock):
            if closer is None:
                continue
            try:
                closer.close() if not isinstance(closer, RunLock) else closer.release()
            except OSError:  # closing after a disk error must not hide that error
                pass
