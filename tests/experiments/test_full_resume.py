"""`--scale full` end to end through the CLI on a small CIFAR-format archive: every trained
model writes its run folder under the report's folder; killed mid-run, the same command
resumes the interrupted run and skips the finished ones; a third call retrains nothing."""

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest


def _cifar_archive(path, per_batch=64, test_n=64, seed=0):
    """A cifar-10-python.tar.gz in the official layout: 5 x ``per_batch`` train images,
    ``test_n`` test images, random pixels and labels."""
    rng = np.random.default_rng(seed)

    def batch(n):
        return pickle.dumps({b"batch_label": b"batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b"labels": [int(v) for v in rng.integers(0, 10, n)],
                             b"filenames": [f"{i}.png".encode() for i in range(n)]}, protocol=2)

    files = {f"data_batch_{i}": batch(per_batch) for i in range(1, 6)}
    files["test_batch"] = batch(test_n)
    files["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for member, payload in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.slow
def test_full_scale_kill_resume_skip(tmp_path):
    archive = _cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "cnnarch", "experiment", "degradation", "--scale", "full",
           "--data", "cifar10", "--data-dir", str(archive), "--models", "20", "--iterations", "6",
           "--seeds", "1", "--out", str(out), "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first_ckpt = out / "runs" / "plain20-seed0" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not first_ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: after plain20's first epoch, before its last
    proc.wait()
    assert not (out / "runs" / "plain20-seed0" / "result.json").exists()
    assert not (out / "results.json").exists()

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "plain20: train error" in second.stderr and "(from its run folder)" in second.stderr
    runs = {p.name for p in (out / "runs").iterdir()}
    assert runs == {"plain20-seed0", "resnet20-seed0"}
    for name in runs:
        done = json.loads((out / "runs" / name / "result.json").read_text())
        assert [h["epoch"] for h in done["history"]] == [1, 2, 3]  # 6 steps of 2 per epoch
        assert done["history"][-1]["step"] == 6
        assert (out / "runs" / name / "checkpoints" / "last.pt").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["iterations"] == 6 and results["config"]["seeds"] == [0]
    assert results["config"]["models"] == ["20"]

    stamps = {n: (out / "runs" / n / "result.json").stat().st_mtime_ns for n in runs}
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stderr[-2000:]
    assert third.stderr.count("(from its run folder)") == 2  # both runs loaded, none trained
    assert stamps == {n: (out / "runs" / n / "result.json").stat().st_mtime_ns for n in runs}
    again = json.loads((out / "results.json").read_text())
    assert {c: v["verdict"] for c, v in again["claims"].items()} == {
        c: v["verdict"] for c, v in results["claims"].items()}
    assert again["measurements"]["R2"] == results["measurements"]["R2"]
