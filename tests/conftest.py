import os

import pytest
import torch

# At most two threads (or OMP_NUM_THREADS, as `make test-portable` sets it to 1): every test
# process on them, deterministic where it matters.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """A child process still running when the tests end is a leak (a DataLoader or seed worker
    nobody shut down). Python's exit would wait for it, perhaps forever: name it, stop it,
    and fail the run."""
    import multiprocessing

    left = multiprocessing.active_children()
    if left:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in left)
        for proc in left:
            proc.kill()
            proc.join(10)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"child processes left running when the tests ended, now killed: "
                            f"{names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
