"""One run, one writer: a second process pointed at a run folder in use is refused with a
clear one-line message and changes nothing there; the lock dies with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_h = sys.modules["cnnarch_reliability_helpers"]  # loaded by conftest.py before any test module


def _files(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock" and "tensorboard" not in p.parts}


def test_second_writer_in_process(copy_run, cli, user_error):
    from cnnarch.train.checkpoint import RunLock

    run = copy_run()
    before = _files(run)
    with RunLock(run):
        user_error(cli(["train", "--resume", str(run), "--epochs", "4", "--quiet"]), "in use")
        user_error(cli(["train", "resnet20", *_h.TINY_ARGS, "--out", str(run)]), "in use")
    assert _files(run) == before
    # a finished run folder without --resume: refused too (would overwrite it)
    user_error(cli(["train", "resnet20", *_h.TINY_ARGS, "--out", str(run)]), "already holds a run")
    assert _files(run) == before


@pytest.mark.timeout(300)
def test_second_process_refused_while_first_trains(tmp_path, cli, user_error):
    run, marker = tmp_path / "run", tmp_path / "paused"
    first = subprocess.Popen(
        [sys.executable, str(_h.DRIVER), "train", "resnet20", *_h.TINY_ARGS, "--out", str(run)],
        env=_h.driver_env(CNNARCH_FAULT=f"pause:step:6:{marker}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 200
        while not marker.exists():  # epoch 1 saved, the first process is in epoch 2
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never reached step 6"
            time.sleep(0.1)
        before = _files(run)
        second = subprocess.run(
            [sys.executable, str(_h.DRIVER), "train", "resnet20", *_h.TINY_ARGS, "--out", str(run)],
            env=_h.driver_env(), capture_output=True, text=True, timeout=200)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert "in use by another process" in line and f"pid {first.pid}" in line, line
        user_error(cli(["train", "--resume", str(run), "--quiet"]), "in use")
        assert _files(run) == before
        # readers are welcome: eval of the folder being written works
        result = cli(["eval", str(run), "--device", "cpu", "--json"])
        assert result.code == 0, result.err
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    # the holder died: the lock went with it, the run continues
    result = cli(["train", "--resume", str(run), "--quiet"])
    assert result.code == 0, result.err
    _h.check_run_folder(run)
