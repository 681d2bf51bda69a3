"""Context: seeds in worker processes (``per_seed``), the worker count ``reproduce`` picks,
and the controls that change what ``ctx.train`` trains."""

import io

import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.experiments import reproduce as rep
from cnnarch.experiments.common import Progress, Scale
from cnnarch.experiments.context import Context
from cnnarch.experiments.degradation import train_twins

TINY = Scale("tiny", depths=(20,), epochs=1, batch_size=32, lr=0.05, weight_decay=1e-4,
             schedule="cosine", warmup_epochs=0.0, probe_images=16, jacobian_blocks=1,
             timing_repeats=1, seeds=2)
RANDOM_DATA = "synthetic:1x8x8:4:64"


def _twins(workers: int, stream=None):
    ctx = Context(TINY, data=RANDOM_DATA, seeds=(0, 1), device="cpu", workers=workers,
                  progress=Progress(stream=stream or io.StringIO()))
    try:
        return ctx, ctx.per_seed(train_twins)
    finally:
        ctx.close()


def _numbers(history):
    """A history without its timings (which differ from run to run)."""
    return [{k: v for k, v in h.items() if k not in ("time_s", "img_per_s")} for h in history]


def test_per_seed_in_workers_matches_this_process():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same order of sums
    try:
        _, here = _twins(1)
    finally:
        torch.set_num_threads(threads)
    stream = io.StringIO()
    ctx, there = _twins(2, stream)
    assert set(here) == set(there) == {0, 1}
    for seed in (0, 1):
        assert set(here[seed]) == set(there[seed]) == {"plain20", "resnet20"}
        for name, a in here[seed].items():
            b = there[seed][name]
            assert _numbers(a["history"]) == _numbers(b["history"]), (seed, name)
            assert a["ratios"] == b["ratios"], (seed, name)
            sa, sb = a["model"].state_dict(), b["model"].state_dict()
            assert all(torch.equal(sa[k], sb[k]) for k in sa), (seed, name)
    lines = stream.getvalue().splitlines()
    for seed in (0, 1):  # the workers' progress reached this process, by seed
        assert any(f"seed {seed} | training plain20" in ln for ln in lines), lines
    assert ctx.progress.done == 2 * 2 * 20 * TINY.epochs  # seeds x twins x depth x epochs, forwarded
    # memoised: a second call returns the same objects without a pool
    assert ctx.per_seed(train_twins)[0] is there[0]


def test_an_error_in_a_worker_reaches_the_caller():
    ctx = Context(TINY, data="nosuchdata", seeds=(0, 1), device="cpu", workers=2)
    try:
        with pytest.raises(UserError, match="unknown dataset 'nosuchdata'"):
            ctx.per_seed(train_twins)
    finally:
        ctx.close()


def test_per_seed_needs_a_module_level_function():
    ctx = Context(TINY, data=RANDOM_DATA, seeds=(0,), device="cpu")
    with pytest.raises(UserError, match="module-level"):
        ctx.per_seed(lambda c, s: s)
    with pytest.raises(UserError, match="workers"):
        Context(TINY, workers=0)
    with pytest.raises(UserError, match="--models"):
        Context(TINY, models=("resnet",))
    with pytest.raises(UserError, match="unknown control"):
        Context(TINY, control="shuffled")


@pytest.mark.parametrize("cores, busy, seeds, want", [
    (2, 0.0, 3, 3),  # 3 seeds on 2 idle cores: one round at 1.5x beats two rounds
    (2, 0.0, 2, 2),
    (2, 0.0, 4, 2),  # two rounds of 2 ties with 4 workers at 2x: the fewer processes
    (2, 1.0, 3, 1),  # one idle core: this process trains the seeds
    (2, 0.4, 3, 3),  # 1.6 idle cores: 3 workers at 1.9x still beat 3 rounds
    (4, 0.0, 3, 3),
    (16, 2.0, 3, 3),
    (2, 0.0, 1, 1),
])
def test_choose_workers(monkeypatch, cores, busy, seeds, want):
    import cnnarch.train.threads as threads

    monkeypatch.setattr(rep, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    got = rep.choose_workers(seeds, "cpu")
    assert got["workers"] == want, got
    assert rep.choose_workers(seeds, "cpu", requested=5)["workers"] == 5
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="--workers"):
            rep.choose_workers(seeds, "cpu", requested=bad)


@pytest.mark.parametrize("to_group", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["SIGTERM-to-the-process", "SIGINT-to-the-group"])
def test_a_signal_stops_reproduce_and_its_seed_workers_at_once(tmp_path, to_group):
    """The seed workers leave SIGINT and SIGTERM to their parent (signals.leave_to_parent):
    the parent stops, terminates them, and the whole process group is gone within seconds,
    with one line and no leaked semaphores (a worker that turned the parent's SIGTERM into a
    stop at its next step outlived the pool's shutdown, and the parent waited for it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "cnnarch", "reproduce", "--scale", "quick",
                             "--workers", "3", "--out", str(tmp_path / "report")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        for line in proc.stderr:  # until a worker has trained one net and is training the next
            if "plain20: train error" in line:
                break
        time.sleep(3)  # inside the next training run, where a worker's own StopRequest would act
        sig = signal.SIGINT if to_group else signal.SIGTERM
        os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
        start = time.monotonic()
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
        assert not _group_alive(proc.pid), "seed workers outlived reproduce"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig and time.monotonic() - start < 30, err[-2000:]
    assert "Traceback" not in err and "leaked" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(f"cnnarch reproduce: error: interrupted by {sig.name}")


def _group_alive(pgid: int) -> bool:
    import os

    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_a_probe_between_epochs_leaves_the_training_as_it_was():
    """ctx.train's on_epoch probes run on forked random streams: a probe that reseeds and
    draws (as the aux-heads gradient probe does) changes nothing in the run after it."""
    def reseeding_probe(net, _record):
        torch.manual_seed(12345)
        torch.rand(1000)
        return {}

    ctx = Context(TINY, data=RANDOM_DATA, seeds=(0,), device="cpu")
    runs = [ctx.train("googlenet_small", seed=0, tag="g", epochs=3, batch_size=16, iterations=0,
                      aux_weight=0.3, on_epoch=probe)
            for probe in (None, reseeding_probe)]
    assert _numbers(runs[0].history) == _numbers(runs[1].history)
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
