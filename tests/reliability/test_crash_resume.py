"""Crash anywhere, lose nothing.

A training process (the real CLI, in a subprocess) SIGKILLs itself at chosen moments
(tests/reliability/_driver.py): mid-epoch, mid-evaluation, half-way through writing a
checkpoint, between the temporary file and the rename, just after the rename, around each
metrics.jsonl line and each setup write, plus timed kills. After every kill:

- whatever checkpoint exists loads (``load_checkpoint``), metrics.jsonl holds only whole
  JSON lines, config.toml reloads;
- the next process continues (``train --resume RUN`` when a last.pt exists, else the same
  fresh command), and may itself be killed at the next point.

The last process of each chain runs to the end; its last.pt (weights, optimizer state,
history) and metrics.jsonl must equal, bit for bit apart from wall-clock fields, those of
an uninterrupted run with the same seed (CPU, one thread).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from cnnarch.train.checkpoint import load_checkpoint


def _helpers():
    import importlib.util

    name = "cnnarch_reliability_helpers"
    if name not in sys.modules:
        path = Path(__file__).with_name("_helpers.py")
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


_h = _helpers()
DRIVER, TINY_ARGS, Zygote = _h.DRIVER, _h.TINY_ARGS, _h.Zygote
check_run_folder, driver_env = _h.check_run_folder, _h.driver_env

KILLED = -signal.SIGKILL

# Two chains of deterministic kill points (each fault is counted inside its own process).
CHAIN_A = [
    "replace-before:config.toml:1",  # setup: before config.toml exists
    "replace-after:config.toml:1",
    "replace-before:metrics.jsonl:1",  # setup: metrics.jsonl (re)written
    "step:2",  # mid-epoch 1, nothing saved yet
    "save-mid:1",  # epoch 1: best.pt half-written (temporary file)
    "replace-before:last.pt:1",  # epoch 1: best.pt saved, last.pt complete but not renamed
    "metrics-before:1",  # epoch 1 checkpointed, not yet logged
    "step:1",  # resumed: first step of epoch 2
    "eval:1",  # resumed: evaluating epoch 2
    "metrics-after:1",  # epoch 2 checkpointed and logged
    "replace-after:last.pt:1",  # epoch 3 renamed, folder not fsync'ed, not logged
]
CHAIN_B = [
    "replace-after:best.pt:1",  # epoch 1's best.pt saved, last.pt not yet
    "replace-after:last.pt:1",  # epoch 1 fully saved
    "replace-before:metrics.jsonl:1",  # resume: metrics.jsonl rewritten from the history
    "step:3",
    "tb:1",  # epoch 2 trained, not saved
    "tb:2",  # epoch 2 saved
    "save-mid:1",  # epoch 3 half-written
    "replace-before:last.pt:1",
    "metrics-after:2",  # the final record written, the process not yet exited
    "eval:1",  # finished run resumed: its final evaluation
    "metrics-before:1",  # ... its final record
]
TIMED = {"A": ["timer:0.15", "timer:0.3"], "B": ["timer:0.2"]}


def _args(run: Path, extra=()) -> list[str]:
    if (run / "checkpoints" / "last.pt").exists():
        return ["train", "--resume", str(run), *extra]
    return ["train", "resnet20", *TINY_ARGS, "--out", str(run), *extra]


def _run(argv, fault="", timeout=180) -> subprocess.CompletedProcess:
    env = {"CNNARCH_FAULT": fault} if fault else {}
    return subprocess.run([sys.executable, str(DRIVER), *map(str, argv)], env=driver_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def run_chain(zygote, run: Path, faults: list[str], must_fire: set[str], extra=()) -> list[dict]:
    """Apply each fault to the next process; return one record per process."""
    records = []
    for fault in faults:
        before = check_run_folder(run) if run.exists() else {"last_epoch": None}
        rc, log = zygote.run(_args(run, extra), fault)
        after = check_run_folder(run)  # the heart of it: whole files after every kill
        records.append({"fault": fault, "rc": rc, "from_epoch": before["last_epoch"],
                        "last_epoch": after["last_epoch"]})
        if fault in must_fire:
            assert rc == KILLED, f"fault {fault} did not fire (rc {rc}): {log[-1500:]}"
        else:
            assert rc in (KILLED, 0), log[-1500:]
    rc, log = zygote.run(_args(run, extra))
    assert rc == 0, log[-1500:]
    check_run_folder(run)
    return records


def _tmp_leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob(".*.tmp"))


@pytest.mark.timeout(600)
def test_kill_points_lose_nothing_and_resume_exactly(tmp_path, same_run, reliability_log):
    ref, run_a, run_b = tmp_path / "ref", tmp_path / "a", tmp_path / "b"
    za, zb = Zygote(tmp_path / "logs-a"), Zygote(tmp_path / "logs-b")

    def first():
        rc, log = za.run(_args(ref))
        assert rc == 0, log
        return run_chain(za, run_a, CHAIN_A + TIMED["A"], set(CHAIN_A))

    try:
        with ThreadPoolExecutor(2) as pool:  # two chains at once (two cores)
            fa = pool.submit(first)
            fb = pool.submit(run_chain, zb, run_b, CHAIN_B + TIMED["B"], set(CHAIN_B))
            records = fa.result() + fb.result()
    finally:
        za.close()
        zb.close()

    fired = [r for r in records if r["rc"] == KILLED]
    assert len([r for r in fired if not r["fault"].startswith("timer")]) >= 20
    for run in (run_a, run_b):
        same_run(ref, run)  # last.pt + metrics.jsonl
        assert not _tmp_leftovers(run), "half-written temporary files were left behind"
        ref_best = load_checkpoint(ref / "checkpoints" / "best.pt")
        assert (run / "checkpoints" / "best.pt").exists(), f"{run.name}: best.pt lost"
        best = load_checkpoint(run / "checkpoints" / "best.pt")
        assert best["epoch"] == ref_best["epoch"], f"{run.name}: best.pt is another epoch"
        for k in ref_best["model"]:
            assert torch.equal(ref_best["model"][k], best["model"][k]), f"best.pt differs: {k}"
    reliability_log["crash/resume kill points (CI)"] = (
        f"{len(fired)} fired ({len(CHAIN_A) + len(CHAIN_B)} deterministic + "
        f"{len(fired) - len(CHAIN_A) - len(CHAIN_B)} timed of {sum(map(len, TIMED.values()))}), "
        f"2 chains, {len(records) + 3} processes")


def test_killed_before_any_checkpoint_leaves_a_restartable_folder(tmp_path):
    """A real subprocess (full import), killed before last.pt exists: --resume says so in one
    line, and the same command starts afresh."""
    run = tmp_path / "run"
    proc = _run(_args(run), "step:3")
    assert proc.returncode == KILLED
    assert not (run / "checkpoints" / "last.pt").exists()
    proc = _run(["train", "--resume", str(run)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no checkpoint" in proc.stderr.strip().splitlines()[-1]
    proc = _run(_args(run))
    assert proc.returncode == 0, proc.stderr


# --- heavier: random kill points and kills from outside ------------------------------------

FAULT_KINDS = ["step:{n}", "save-mid:{k}", "replace-before:last.pt:{k}", "replace-after:last.pt:{k}",
               "replace-before:best.pt:1", "replace-after:best.pt:1", "metrics-before:{k}",
               "metrics-after:{k}", "eval:{k}", "tb:{n}", "replace-before:metrics.jsonl:1",
               "replace-after:config.toml:1"]
DIGITS_ARGS = ["--data", "digits", "--batch-size", "128", "--epochs", "3", "--warmup-epochs", "0",
               "--device", "cpu", "--quiet", "--seed", "1", "--log-every", "5"]


def _digits_args(run: Path) -> list[str]:
    if (run / "checkpoints" / "last.pt").exists():
        return ["train", "--resume", str(run)]
    return ["train", "resnet20", *DIGITS_ARGS, "--out", str(run)]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_random_kills_digits(tmp_path, same_run, reliability_log):
    """40 random in-process kill points + 10 kills from outside at random times, on digits
    (11 steps/epoch, 3 epochs). Seeded, so a failure replays."""
    rng = random.Random(20261127)
    ref, run = tmp_path / "ref", tmp_path / "run"
    proc = _run(_digits_args(ref))
    assert proc.returncode == 0, proc.stderr
    fired = tried = 0
    for i in range(50):
        tried += 1
        if i % 5 == 4:  # from outside, at a random moment
            p = subprocess.Popen([sys.executable, str(DRIVER), *_digits_args(run)],
                                 env=driver_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(1.5, 6.0))
            p.kill()
            p.communicate()
            rc = p.returncode
        else:
            fault = rng.choice(FAULT_KINDS).format(n=rng.randint(1, 30), k=rng.randint(1, 3))
            rc = _run(_digits_args(run), fault).returncode
            assert rc in (KILLED, 0)
        fired += rc == KILLED
        check_run_folder(run)
    proc = _run(_digits_args(run))
    assert proc.returncode == 0, proc.stderr
    same_run(ref, run)
    reliability_log["crash/resume random kills (slow)"] = f"{fired} fired of {tried} tried"
