"""Run outputs: metrics.jsonl, TensorBoard events, the progress bar and log lines.

``metrics.jsonl`` holds one JSON object per line. Each line is written with a single
``os.write`` on an ``O_APPEND`` descriptor and fsync'ed, so a crash never leaves a torn
line in the middle; on resume the file is rewritten (atomically) from the checkpoint's
history, so it matches an uninterrupted run (later lines no checkpoint holds are moved
aside first, train/rundir.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path

from .checkpoint import atomic_write_text

log = logging.getLogger("cnnarch.train")


def _clean(v):
    """JSON has no NaN/inf: write them as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def json_line(record: dict) -> str:
    return json.dumps(_clean(record), separators=(",", ":"), allow_nan=False) + "\n"


class MetricsFile:
    """Append-only JSONL writer (one ``os.write`` + fsync per record)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        # O_NOFOLLOW: a symlink put at metrics.jsonl is never appended through
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0),
                          0o644)

    @staticmethod
    def rewrite(path: str | os.PathLike, records: list[dict]) -> None:
        atomic_write_text(path, "".join(json_line(r) for r in records))

    def write(self, record: dict) -> None:
        data = json_line(record).encode("utf-8")
        n = os.write(self.fd, data)
        if n != len(data):  # pragma: no cover - regular files write fully
            raise OSError(f"short write to {self.path}")
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Parse metrics.jsonl, skipping a final line without its newline (never written whole)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


class TensorBoard:
    """Thin wrapper: scalars per epoch (and per progress update); a no-op when disabled."""

    def __init__(self, run_dir: Path | None, purge_step: int | None = None):
        self.writer = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar over all optimizer steps of the run (ETA for the whole run)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True,
                unit="step", file=sys.stderr, leave=True, smoothing=0.1)


def epoch_line(rec: dict, epochs: int) -> str:
    split = rec.get("eval_split", "test")
    test = ""
    if rec.get("test_acc") is not None:
        test = f"  {split} loss {rec['test_loss']:.4f} acc {100 * rec['test_acc']:.2f}%"
    return (f"epoch {rec['epoch']}/{epochs}  train loss {rec['train_loss']:.4f} "
            f"acc {100 * rec['train_acc']:.2f}%{test}  lr {rec['lr']:.4g}  "
            f"{rec['img_per_s']:.0f} img/s  {rec['time_s']:.1f}s")


def final_line(cfg, result) -> str:
    """The one line `cnnarch train` ends with: accuracy, top-5 (more than 5 classes), error,
    epochs and the whole run's time (sessions before a resume included)."""
    last = result.history[-1]
    split = last.get("eval_split", "test")
    acc = f"{split} accuracy {100 * (last.get('test_acc') or 0):.2f}%"
    if last.get("test_top5") is not None and len(result.classes) > 5:
        acc += f" (top-5 {100 * last['test_top5']:.2f}%)"
    n = last["epoch"]
    resumed = f", resumed after epoch {result.resumed_from}" if result.resumed_from else ""
    return (f"{cfg.model} on {cfg.data}: {acc}, train error {100 * (1 - last['train_acc']):.2f}%, "
            f"{n} epoch{'' if n == 1 else 's'} in {result.total_s:.1f} s{resumed}; "
            f"run folder {result.run_dir}")
