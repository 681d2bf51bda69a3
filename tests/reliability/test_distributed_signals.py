"""SIGINT / SIGTERM to the process group of a 2-rank CPU (gloo) torchrun job, as Ctrl-C in a
terminal sends it: the agent and both ranks receive it (and the agent forwards it to the
ranks again). Every rank must stop at the same safe point, rank 0 print the one line saying
what was kept, rank 1 only that it stopped with rank 0, each rank exit 128 + the signal,
no rank print a traceback, and ``torchrun ... train --resume`` continue exactly: the
resumed job ends bit for bit where an uninterrupted one does.

The signal is sent by rank 0 itself to its process group right after its 6th optimizer step
(``_driver.py`` ``killpg:SIG:6``), which makes the moment deterministic; the job runs in a
session of its own so the signal reaches nothing else.

torchrun's agent is not cnnarch: on the signal it stops its workers, prints its own
``SignalException`` traceback and exits 1, whatever the workers did. The tests therefore
judge the workers' lines and exits (the agent reports a worker's exit code only when the
worker fails on its own) and check the agent's traceback is the only one.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_h = sys.modules["cnnarch_reliability_helpers"]

AGENT_TRACEBACK = re.compile(r"Traceback \(most recent call last\):\n(?:  .*\n)+"
                             r"torch\.distributed\.elastic\.multiprocessing\.api\.SignalException: .*")


def torchrun(argv, fault: str = "", timeout: float = 300, exits: Path | None = None):
    env = {"CNNARCH_FAULT": fault, "CNNARCH_FAULT_RANK": "0"} if fault else {}
    if exits is not None:
        env["CNNARCH_EXIT_DIR"] = str(exits)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(_h.DRIVER), *map(str, argv)],
                          env=_h.driver_env(**env), capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def _train(run: Path) -> list[str]:
    return ["train", "resnet20", *_h.TINY_ARGS, "--out", str(run)]


def _worker_lines(err: str) -> list[str]:
    """stderr without torchrun's own log lines and its SignalException traceback."""
    err = AGENT_TRACEBACK.sub("", err)
    return [line for line in err.splitlines()
            if line.strip() and not re.match(r"[WIE]\d{4} \d\d:\d\d:\d\d\.\d+ \d+ torch/", line)]


def _interrupt(run: Path, sig: int) -> subprocess.CompletedProcess:
    exits = run.parent / "exits"
    exits.mkdir()
    proc = torchrun(_train(run), fault=f"killpg:{signal.Signals(sig).name[3:]}:6", exits=exits)
    codes = {p.name: int(p.read_text()) for p in exits.iterdir()}
    assert codes == {"rank0.exit": 128 + sig, "rank1.exit": 128 + sig}, (codes, proc.stderr[-3000:])
    lines = _worker_lines(proc.stderr)
    assert "Traceback" not in "\n".join(lines), proc.stderr[-3000:]
    assert "KeyboardInterrupt" not in proc.stderr and "RuntimeError" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in lines if "error:" in line]
    name = signal.Signals(sig).name
    # step 6 is in epoch 2 (4 steps per epoch): both ranks stop there, epoch 1 is kept
    rank0 = [line for line in errors if line.startswith(f"cnnarch train: error: interrupted by {name} at step ")]
    rank1 = [line for line in errors if "rank 1 of 2 stopped with rank 0" in line and name in line]
    assert len(rank0) == 1 and len(rank1) == 1 and len(errors) == 2, proc.stderr[-3000:]
    assert f"--resume {run}" in rank0[0] and "(epoch 1 of 3)" in rank0[0], rank0
    steps = {int(m) for m in re.findall(r"at step (\d+)", rank0[0])}
    assert steps <= {6, 7}, rank0  # the next step at the latest
    assert "Sending process" in proc.stderr  # the agent did forward the signal to both ranks
    found = _h.check_run_folder(run)
    assert found["last_epoch"] == 1
    return proc


@pytest.mark.slow  # three torchrun start-ups: ~45 s on 2 shared cores
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_group_signal_stops_every_rank_at_one_step_and_resume_finishes(tmp_path, sig, reliability_log):
    run = tmp_path / "run"
    start = time.monotonic()
    _interrupt(run, sig)
    stopped = time.monotonic() - start
    proc = torchrun(["train", "--resume", str(run)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _h.check_run_folder(run)["last_epoch"] == 3
    reliability_log[f"torchrun: {signal.Signals(sig).name} to the process group at step 6"] = (
        f"both ranks stopped at one step, one line, {stopped:.1f} s; resumed to epoch 3")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_group_signal_then_resume_equals_an_uninterrupted_job(tmp_path, same_run):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert torchrun(_train(ref)).returncode == 0
    _interrupt(run, signal.SIGINT)
    proc = torchrun(["train", "--resume", str(run)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    same_run(ref, run)
