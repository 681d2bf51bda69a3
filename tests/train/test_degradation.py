"""The degradation problem (He et al. 2015, Sec. 4.2, Fig. 6), measured: with the default
recipe on digits (15 epochs), plain-56 ends with a much higher *training* error than
plain-20. Measured over seeds 0 and 1 (bf16 auto, 2 CPU threads): plain-20 1.6 % / 2.6 %,
plain-56 69.4 % / 73.8 %."""

import pytest

from cnnarch.train import TrainConfig, train


@pytest.mark.slow
def test_plain56_trains_worse_than_plain20():
    errors = {}
    for model in ("plain20", "plain56"):
        history = train(TrainConfig(model=model, data="digits", epochs=15, seed=0, quiet=True,
                                    device="cpu")).history
        errors[model] = 1.0 - history[-1]["train_acc"]
    assert errors["plain56"] > errors["plain20"] + 0.2, errors
