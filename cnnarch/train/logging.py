"""Run outputs: metrics.jsonl, TensorBoard events, the progress bar and log lines.

``metrics.jsonl`` holds one JSON object per line. Each line is written with a single
``os.write`` on an ``O_APPEND`` descriptor and fsync'ed, so a crash never leaves a torn
line in the middle; on resume the file is rewritten (atomically) from the checkpoint's
history, so it matches an uninterrupted run (later lines no checkpoint holds are moved
aside first, train/rundir.py).
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import math
import os
import socket
import struct
import sys
import time
from pathlib import Path

from ..errors import UserError
from .checkpoint import atomic_write_text, storage_error

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
    """Scalars per epoch (and per progress update) in a TensorBoard event file; a no-op when
    disabled.

    The events are written here, in the calling thread, one ``os.write`` per event on an
    ``O_APPEND | O_NOFOLLOW`` descriptor of a new file (``O_EXCL``) in ``RUN/tensorboard/``
    (never a symlink). So a full, read-only or forbidden disk is a ``StorageError`` raised at
    the write that failed (one line naming the event file), not a traceback from a writer
    thread noticed later. The record framing is TensorFlow's (length, masked CRC-32C of it,
    the ``Event`` proto, masked CRC-32C of that). ``purge_step`` starts the file with a
    ``SessionLog.START`` at that step: TensorBoard then drops what an earlier session logged
    from that step on (the part of the run that a resume redoes).
    """

    FILE_VERSION = "brain.Event:2"

    def __init__(self, run_dir: Path | None, purge_step: int | None = None):
        self.fd: int | None = None
        self.path: Path | None = None
        if run_dir is None:
            return
        folder = Path(run_dir) / "tensorboard"
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise (storage_error(exc, folder) or exc) from None
        if folder.is_symlink() or not folder.is_dir():
            raise UserError(f"{folder} is not a folder of ours (a symbolic link or a file); "
                            "refusing to write through it")
        self.path = folder / (f"events.out.tfevents.{int(time.time()):010d}."
                              f"{socket.gethostname()}.{os.getpid()}.{next(_EVENT_FILES)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise (storage_error(exc, self.path) or exc) from None
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self._write(Event(wall_time=time.time(), step=purge_step or 0, file_version=self.FILE_VERSION))
        if purge_step is not None:
            self._write(Event(wall_time=time.time(), step=purge_step,
                              session_log=SessionLog(status=SessionLog.START)))

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        if self.fd is None:
            return
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[
            Summary.Value(tag=f"{prefix}{k}", simple_value=float(v)) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)])
        if summary.value:
            self._write(Event(wall_time=time.time(), step=int(step), summary=summary))

    def _write(self, event) -> None:
        data = _record(event.SerializeToString())
        try:
            n = os.write(self.fd, data)
            if n != len(data):  # a regular file takes it whole unless the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        except OSError as exc:
            raise (storage_error(exc, self.path) or exc) from None

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


_EVENT_FILES = itertools.count()


def _record(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of data."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header)) + data
            + struct.pack("<I", masked_crc32c(data)))


class _NoBar:
    """The bar of a run that shows none: what the loop calls on a bar, doing nothing (a
    disabled tqdm still creates a multiprocessing lock, which a worker process then leaks
    when its parent terminates it)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def write(self, line: str) -> None:
        print(line, file=sys.stderr)

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar over all optimizer steps of the run (ETA for the whole run); nothing when
    not ``enabled``."""
    if not enabled:
        return _NoBar()
    tqdm = _tqdm_class()
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


def _tqdm_class():
    """The notebook widget bar where it can be drawn (a Jupyter kernel with ipywidgets), the
    text bar elsewhere (tqdm.auto warns without ipywidgets)."""
    import importlib.util

    from tqdm.std import tqdm

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    return tqdm
