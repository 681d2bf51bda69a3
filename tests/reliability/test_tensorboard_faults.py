"""The TensorBoard event file under a full, read-only or forbidden disk: the same one line
(naming the event file) and exit code as a checkpoint write, no writer-thread traceback,
and the history on disk never ahead of the checkpoints.

Faults are injected into the calls the event writer makes (``os.write`` / ``os.open`` /
``mkdir`` on a path inside ``RUN/tensorboard``); production code has no test hooks.
"""

import errno
import os
from pathlib import Path

import pytest

from cnnarch.train.checkpoint import load_checkpoint
from cnnarch.train.logging import read_metrics

ARGS = ["--data", "synthetic:1x8x8:4:64", "--batch-size", "16", "--epochs", "3", "--log-every", "2",
        "--quiet", "--no-val-split", "--warmup-epochs", "0", "--device", "cpu"]


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _check_history(out: Path) -> None:
    """Every epoch line in metrics.jsonl has its checkpoint; no temporary is left."""
    assert not list(out.rglob("*.tmp"))
    metrics = out / "metrics.jsonl"
    epochs = [r["epoch"] for r in read_metrics(metrics) if r["type"] == "epoch"] if metrics.exists() else []
    last = out / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)["epoch"] if last.exists() else 0
    assert not epochs or max(epochs) <= saved


CODES = [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT]
# the event file's writes: 1 = its header, 2 = the first per-step scalars, 4 = epoch 1's
# scalars (after its checkpoint and metrics line), 9 = a write in epoch 3
NTH = [1, 2, 4, 9]


@pytest.mark.parametrize("code", CODES, ids=errno.errorcode.get)
@pytest.mark.parametrize("nth", NTH)
def test_event_file_write_errors_are_one_line(cli, user_error, tmp_path, monkeypatch, code, nth):
    import cnnarch.train.logging as lg

    real = os.write
    calls = {"n": 0}

    def failing(fd, data):
        if "/tensorboard/" in _fd_path(fd):
            calls["n"] += 1
            if calls["n"] == nth:
                raise OSError(code, os.strerror(code))
        return real(fd, data)

    monkeypatch.setattr(lg.os, "write", failing)
    out = tmp_path / "run"
    result = cli(["train", "resnet20", *ARGS, "--out", str(out)])
    line = user_error(result, os.strerror(code), str(out / "tensorboard" / "events.out.tfevents"))
    assert "Exception in thread" not in result.err
    assert calls["n"] == nth
    _check_history(out)
    # the run continues from its checkpoint (or, with none yet, the same command starts over)
    monkeypatch.setattr(lg.os, "write", real)
    resume = ["--resume", str(out)] if (out / "checkpoints" / "last.pt").exists() else []
    again = cli(["train", "resnet20", *ARGS, "--out", str(out), *resume])
    assert again.code == 0, again.err
    assert load_checkpoint(out)["epoch"] == 3
    del line


def test_short_write_to_the_event_file_is_a_full_disk(cli, user_error, tmp_path, monkeypatch):
    import cnnarch.train.logging as lg

    real = os.write

    def short(fd, data):
        if "/tensorboard/" in _fd_path(fd):
            return real(fd, data[: len(data) // 2])
        return real(fd, data)

    monkeypatch.setattr(lg.os, "write", short)
    out = tmp_path / "run"
    user_error(cli(["train", "resnet20", *ARGS, "--out", str(out)]), "No space left", "tensorboard")
    _check_history(out)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS], ids=errno.errorcode.get)
@pytest.mark.parametrize("where", ["open", "mkdir"])
def test_event_file_creation_errors_are_one_line(cli, user_error, tmp_path, monkeypatch, code, where):
    import cnnarch.train.logging as lg

    out = tmp_path / "run"
    if where == "open":
        real_open = os.open

        def failing_open(path, *a, **k):
            if "tfevents" in str(path):
                raise OSError(code, os.strerror(code), str(path))
            return real_open(path, *a, **k)

        monkeypatch.setattr(lg.os, "open", failing_open)
    else:
        real_mkdir = Path.mkdir

        def failing_mkdir(self, *a, **k):
            if self.name == "tensorboard":
                raise OSError(code, os.strerror(code), str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", failing_mkdir)
    result = cli(["train", "resnet20", *ARGS, "--out", str(out)])
    user_error(result, os.strerror(code), str(out / "tensorboard"))
    _check_history(out)


def test_tensorboard_folder_that_is_a_link_is_not_written_through(cli, user_error, tmp_path):
    import shutil

    run = tmp_path / "run"
    assert cli(["train", "resnet20", *ARGS, "--out", str(run)]).code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run / "tensorboard")
    (run / "tensorboard").symlink_to(elsewhere)
    result = cli(["train", "resnet20", *ARGS, "--epochs", "4", "--out", str(run), "--resume", str(run)])
    user_error(result, "tensorboard", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_event_files_read_back_in_tensorboard(tmp_path):
    """The hand-written records are what TensorBoard reads: scalars, steps, and the purge of
    the steps a resumed session redoes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnarch.train.logging import TensorBoard

    tb = TensorBoard(tmp_path)
    tb.scalars({"acc": 0.5, "n": 3, "bad": float("nan"), "flag": True}, 1, prefix="epoch/")
    tb.scalars({"acc": 0.6}, 2, prefix="epoch/")
    tb.close()
    tb = TensorBoard(tmp_path, purge_step=2)  # a resume from step 2: the old step-2 point goes
    tb.scalars({"acc": 0.7}, 2, prefix="epoch/")
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["epoch/acc", "epoch/n"]
    assert [(e.step, round(e.value, 3)) for e in acc.Scalars("epoch/acc")] == [(1, 0.5), (2, 0.7)]
