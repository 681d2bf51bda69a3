"""Thread choice: --threads overrides, a busy machine gets one thread, the probe picks the faster."""

import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.train import threads


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(threads, "_measured", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 10**6, True, 2.5, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(UserError, match="--threads"):
        threads.set_threads(bad)


def test_override_sets_exactly_that():
    assert "1 (--threads)" in threads.set_threads(1)
    assert torch.get_num_threads() == 1


def test_busy_machine_takes_one_thread_without_timing(monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1.0)
    monkeypatch.setattr(threads.time, "perf_counter", lambda: pytest.fail("timed on a busy machine"))
    line = threads.set_threads(None)
    assert torch.get_num_threads() == 1 and "1.0 cores busy" in line


@pytest.mark.parametrize("faster", [1, 2])
def test_probe_keeps_the_faster_count(monkeypatch, faster):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    clock = {"t": 0.0}

    def fake_clock():  # each call advances by 1 ms per thread count when slow, 0.1 ms when fast
        clock["t"] += 0.001 if torch.get_num_threads() != faster else 0.0001
        return clock["t"]

    monkeypatch.setattr(threads.time, "perf_counter", fake_clock)
    line = threads.set_threads(None)
    assert torch.get_num_threads() == faster and f"threads: {faster} of 2" in line
    assert threads.set_threads(None) == line  # measured once per process
