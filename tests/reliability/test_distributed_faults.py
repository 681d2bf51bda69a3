"""Distributed faults: a 2-process CPU run under torchrun (gloo) in which one rank dies.

The job must stop with a non-zero exit within ``STOP_WITHIN_S`` (no hang), leave a loadable
last checkpoint, and ``train --resume`` under torchrun must then finish. A rank that dies
is noticed by torchrun's agent at once (it stops the other ranks); a rank that hangs
(SIGSTOP) is noticed by the collective timeout, ``cnnarch.train.distributed.TIMEOUT_S``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_h = sys.modules["cnnarch_reliability_helpers"]  # loaded by conftest.py before any test module
STOP_WITHIN_S = 60  # a dead rank: the job ends this soon (torchrun's agent; measured ~1 s)


def torchrun(argv, fault: str = "", rank: int = 1, timeout: float = 300):
    env = {"CNNARCH_FAULT": fault, "CNNARCH_FAULT_RANK": str(rank)} if fault else {}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(_h.DRIVER), *map(str, argv)],
                          env=_h.driver_env(**env), capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def _fresh(run: Path):
    return ["train", "resnet20", *_h.TINY_ARGS, "--out", str(run)]


@pytest.mark.timeout(600)
def test_dead_rank_stops_job_and_resume_completes(tmp_path, reliability_log):
    run = tmp_path / "run"
    proc, elapsed = torchrun(_fresh(run), fault="step:6", rank=1)  # rank 1 dies in epoch 2
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "SIGKILL" in proc.stderr or "Signal 9" in proc.stderr, proc.stderr[-2000:]
    assert elapsed < STOP_WITHIN_S
    proc_rc = proc.returncode
    found = _h.check_run_folder(run)
    assert found["last_epoch"] == 1
    proc, resume_s = torchrun(["train", "--resume", str(run)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = _h.check_run_folder(run)
    assert found["last_epoch"] == 3
    reliability_log["distributed: rank 1 killed at step 6"] = (
        f"job exit {proc_rc}, stopped after {elapsed:.1f} s wall (whole torchrun incl. start-up), "
        f"resumed in {resume_s:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_writer_rank_killed_mid_checkpoint_resumes_exactly(tmp_path, same_run):
    """Rank 0 (the writer) dies half-way through writing epoch 2's checkpoint; the resumed
    2-process run ends with the same weights and metrics as an uninterrupted one."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    proc, _ = torchrun(_fresh(ref))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc, elapsed = torchrun(_fresh(run), fault="save-mid:3", rank=0)  # epoch 2 (best.pt, last.pt)
    assert proc.returncode != 0 and elapsed < STOP_WITHIN_S + 60
    assert _h.check_run_folder(run)["last_epoch"] == 1
    proc, _ = torchrun(["train", "--resume", str(run)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    same_run(ref, run)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hung_rank_ends_by_collective_timeout(tmp_path):
    """Rank 1 stops (SIGSTOP) instead of dying: rank 0's collective times out after
    TIMEOUT_S and the job exits non-zero; nothing hangs forever."""
    from cnnarch.train.distributed import TIMEOUT_S

    run, marker = tmp_path / "run", tmp_path / "paused"
    env = _h.driver_env(CNNARCH_FAULT=f"pause:step:6:{marker}", CNNARCH_FAULT_RANK="1")
    start = time.monotonic()
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2", str(_h.DRIVER), *_fresh(run)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not marker.exists():
            assert job.poll() is None and time.monotonic() - start < 300
            time.sleep(0.2)
        import os

        os.kill(int(marker.read_text()), signal.SIGSTOP)
        job.wait(timeout=TIMEOUT_S + 180)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    assert _h.check_run_folder(run)["last_epoch"] == 1
