import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Training tests run tiny models: one intra-op thread is as fast and far steadier on a
    shared 2-core machine (OpenMP barriers stall when another process holds a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
