"""One tiny `reproduce` run shared by the report tests and the random-labels control.

Its data set is synthetic: random images with random labels, so nothing can be learned and
it is also the random-labels negative control of every trained claim."""

import pytest

from cnnarch.experiments.common import Scale

TINY = Scale("tiny", depths=(20,), epochs=1, batch_size=32, lr=0.05, weight_decay=1e-4,
             schedule="cosine", warmup_epochs=0.0, aux_epochs=1, aux_iterations=2, aux_batch_size=16,
             probe_images=16, jacobian_blocks=1, timing_repeats=1, seeds=2)
RANDOM_DATA = "synthetic:1x8x8:4:64"


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory):
    import torch

    from cnnarch.experiments.reproduce import reproduce

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("report")
    try:
        results = reproduce(TINY, RANDOM_DATA, out, seed=0, device="cpu", command="test")
    finally:
        torch.set_num_threads(threads)  # reproduce picks its own thread count
    return out, results
