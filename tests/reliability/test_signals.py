"""SIGINT and SIGTERM: stop at a safe point, say what was kept and how to continue, never
swallowed; the same for both signals, in-process and through the real CLI."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnarch.signals import Interrupted
from cnnarch.train import TrainConfig, train
from cnnarch.train.checkpoint import load_checkpoint
from cnnarch.train.logging import read_metrics

FAST = dict(model="resnet20", data="synthetic:1x8x8:4:64", batch_size=16, warmup_epochs=0.0,
            device="cpu", quiet=True, val_split=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("at_epoch", [1, 2, 4])
def test_signal_stops_after_a_whole_epoch_and_resume_finishes(tmp_path, sig, at_epoch):
    out = tmp_path / "run"

    def send(model, record):
        if record["epoch"] == at_epoch:
            os.kill(os.getpid(), sig)  # arrives while the epoch's checkpoint is already written

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as info:
        train(TrainConfig(epochs=4, out=str(out), **FAST), on_epoch_end=send)
    msg = str(info.value)
    assert info.value.exit_code == 128 + sig and signal.Signals(sig).name in msg
    assert f"--resume {out}" in msg and f"(epoch {at_epoch} of 4)" in msg and "\n" not in msg
    assert load_checkpoint(out)["epoch"] == at_epoch  # the next epoch's first step was not saved
    epochs = [r["epoch"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "epoch"]
    assert epochs == list(range(1, at_epoch + 1))
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # handlers restored
    result = train(TrainConfig(epochs=4, out=str(out), resume=str(out), **FAST))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]


def test_signal_before_any_checkpoint_says_so(tmp_path):
    out = tmp_path / "run"
    import cnnarch.train.loop as loop

    real = loop.train_one_epoch

    def first_step_then_signal(s, epoch, bar, stop):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(s, epoch, bar, stop)

    loop.train_one_epoch = first_step_then_signal
    try:
        with pytest.raises(Interrupted, match="no epoch had finished"):
            train(TrainConfig(epochs=2, out=str(out), **FAST))
    finally:
        loop.train_one_epoch = real
    assert not (out / "checkpoints" / "last.pt").exists()


def _cli(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cnnarch = str(Path(sys.executable).with_name("cnnarch"))
    return subprocess.Popen([cnnarch, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(path: Path, proc, timeout=120.0):
    t = time.monotonic()
    while not path.exists():
        if proc.poll() is not None or time.monotonic() - t > timeout:
            proc.kill()
            pytest.fail(f"no {path} (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)


def _image_folder(root: Path) -> Path:
    from PIL import Image

    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(24):
            Image.new("RGB", (12, 12), (80 * c, 7 * i, 0)).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("sig, workers", [
    (signal.SIGINT, 0),
    pytest.param(signal.SIGTERM, 0, marks=pytest.mark.slow),
    pytest.param(signal.SIGINT, 2, marks=pytest.mark.slow),
    pytest.param(signal.SIGTERM, 2, marks=pytest.mark.slow),
])
def test_cli_signal_to_the_process_group_is_one_line(tmp_path, sig, workers):
    """The real CLI, the signal sent to its whole process group (as Ctrl-C does), DataLoader
    workers included: exit 128 + signal, one line naming --resume, no worker tracebacks."""
    data = _image_folder(tmp_path / "shapes")
    out = tmp_path / "run"
    proc = _cli(["train", "resnet20", "--data", f"imagefolder:{data}", "--batch-size", "8",
                 "--workers", str(workers), "--epochs", "200", "--warmup-epochs", "0", "--quiet",
                 "--device", "cpu", "--out", str(out)], tmp_path)
    _wait_for(out / "checkpoints" / "last.pt", proc)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.strip().splitlines()[-1]
    assert "interrupted by" in last and f"--resume {out}" in last, err
    assert load_checkpoint(out)["epoch"] >= 1
