"""2-process DDP (gloo, CPU) against one process with the same global batch.

Every rank draws the same global permutation and augmentation and takes its half of each
global batch, and DDP averages the gradients, so a DDP step equals a single-process step
up to float summation order -- except for BatchNorm, whose batch statistics are per rank.
So: without BN (norm="none") the final weights must match the single-process run within
atol 1e-4 / rtol 1e-3 (fp32, 4 steps) and the logged loss within 1e-4; with per-rank BN
(the CPU default: PyTorch's SyncBatchNorm is CUDA-only) only the losses are compared
(within 0.05).
"""

import os
import subprocess
import sys

import pytest
import torch

from cnnarch.train import TrainConfig, load_checkpoint, train

ARGS = ["--data", "digits", "--batch-size", "64", "--iterations", "4", "--lr", "0.02",
        "--warmup-epochs", "0", "--precision", "fp32", "--channels-last", "off", "--quiet"]


def _torchrun(out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cnnarch", "train", "resnet20", *ARGS, "--out", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_checkpoint(out)


def _single(**kw):
    torch.set_num_threads(1)
    try:
        return train(TrainConfig(model="resnet20", data="digits", batch_size=64, iterations=4, lr=0.02,
                                 warmup_epochs=0.0, precision="fp32", channels_last="off", quiet=True, **kw))
    finally:
        torch.set_num_threads(min(2, os.cpu_count() or 1))


def _assert_close(state, model, atol, rtol):
    ours = model.state_dict()
    for k, v in state["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ours[k].cpu(), atol=atol, rtol=rtol, msg=k)


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    state = _torchrun(tmp_path / "ddp", "--model-kwargs", '{"norm": "none"}')
    single = _single(model_kwargs={"norm": "none"})
    assert state["step"] == 4 and (tmp_path / "ddp" / "metrics.jsonl").is_file()
    _assert_close(state, single.model, atol=1e-4, rtol=1e-3)
    assert state["history"][-1]["train_loss"] == pytest.approx(single.history[-1]["train_loss"], abs=1e-4)
    assert state["history"][-1]["test_acc"] == pytest.approx(single.history[-1]["test_acc"], abs=1e-9)


@pytest.mark.slow
def test_ddp_per_rank_bn_is_close(tmp_path):
    state = _torchrun(tmp_path / "ddp")
    single = _single()
    assert state["history"][-1]["train_loss"] == pytest.approx(single.history[-1]["train_loss"], abs=0.05)
