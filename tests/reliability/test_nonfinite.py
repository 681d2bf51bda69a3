"""Non-finite values: a loss that becomes NaN/inf stops the run naming the step; the last
good checkpoint is untouched, metrics.jsonl says why it stopped, and resuming with a lower
learning rate finishes the run."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch

from cnnarch.data import sources

_h = sys.modules["cnnarch_reliability_helpers"]  # loaded by conftest.py before any test module


def _poison(monkeypatch, at_batch: int, value: float):
    """The ``at_batch``-th training batch (1-based, counted over the run) holds ``value``."""
    real = sources.InMemoryDataset.train_batches
    seen = {"n": 0}

    def train_batches(self, *a, **k):
        for x, y in real(self, *a, **k):
            seen["n"] += 1
            if seen["n"] == at_batch:
                x = x.clone()
                x[0, 0, 0, 0] = value
            yield x, y

    monkeypatch.setattr(sources.InMemoryDataset, "train_batches", train_batches)
    return seen


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_names_step_keeps_checkpoint(tmp_path, monkeypatch, cli, user_error,
                                                           value):
    run = tmp_path / "run"
    _poison(monkeypatch, at_batch=6, value=value)  # epoch 2 (4 steps per epoch), step 6
    result = cli(["train", "resnet20", *_h.TINY_ARGS, "--out", str(run)])
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    line = result.err.strip().splitlines()[-1]
    assert "non-finite loss at step 6 (epoch 2" in line, line
    assert "last.pt" in line and "lower --lr" in line
    found = _h.check_run_folder(run)
    assert found["last_epoch"] == 1  # the good epoch-1 checkpoint, not the poisoned state
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    records = _h.metrics_without_time(run / "metrics.jsonl")
    assert records[-1] == {"type": "stopped", "reason": "non-finite loss", "step": 6, "epoch": 2}
    sha = _sha(run / "checkpoints" / "last.pt")

    monkeypatch.undo()  # the data is clean again; resume with a lower learning rate
    result = cli(["train", "--resume", str(run), "--lr", "0.01"])
    assert result.code == 0, result.err
    found = _h.check_run_folder(run)
    assert found["last_epoch"] == 3 and _sha(run / "checkpoints" / "last.pt") != sha
    records = _h.metrics_without_time(run / "metrics.jsonl")
    assert [r["type"] for r in records] == ["epoch", "epoch", "epoch", "final"]
    assert records[1]["lr"] < 0.01


def test_exploding_learning_rate(tmp_path, cli, reliability_log):
    """A real divergence (no poison): lr 1e6. Stops in one line naming the step, exit 1."""
    run = tmp_path / "run"
    result = cli(["train", "resnet20", *_h.TINY_ARGS, "--out", str(run), "--lr", "1e6",
                  "--set", "log_every=1"])
    assert result.code == 1, result.err
    line = result.err.strip().splitlines()[-1]
    assert "Traceback" not in result.err and "non-finite loss at step" in line, line
    _h.check_run_folder(run)
    reliability_log["non-finite: lr 1e6 stopped at"] = line.split("non-finite loss at ")[1].split(";")[0]


def test_nonfinite_in_first_epoch_advice_works(tmp_path, monkeypatch, cli, user_error):
    """No checkpoint yet: the message must not send the user to --resume (which would fail);
    the advised command (the same one, lower --lr) works."""
    run = tmp_path / "run"
    _poison(monkeypatch, at_batch=2, value=float("nan"))
    result = cli(["train", "resnet20", *_h.TINY_ARGS, "--out", str(run)])
    assert result.code == 1
    line = result.err.strip().splitlines()[-1]
    assert "non-finite loss at step 2 (epoch 1" in line and "resume" not in line, line
    monkeypatch.undo()
    result = cli(["train", "resnet20", *_h.TINY_ARGS, "--out", str(run), "--lr", "0.01"])
    assert result.code == 0, result.err
