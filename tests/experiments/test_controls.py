"""Negative controls, end to end: under each control a trained claim's rule must not say
"reproduced" (a rule that does is a bug in the rule).

- random labels: the shared tiny run trains on random images with random labels, and
  ``reproduce(control="random-labels")`` trains on digits with its labels permuted;
- untrained: ``reproduce(control="untrained")`` measures the networks at initialisation;
- plain twins: the residual networks replaced by their plain twins, on digits, long enough
  for the shallow net to learn (so the rules are judged, not stopped by the learning gate).
"""

import pytest

from cnnarch.experiments.claims import REPRODUCED, claims
from cnnarch.experiments.common import Scale

TWIN_EXPERIMENTS = ["degradation", "residuals", "gradient-flow"]
# one epoch on digits: enough for ResNet-20 to learn (12-23 % test error, seeds 0 and 1)
DIGITS_TINY = Scale("tiny-digits", depths=(20,), epochs=1, batch_size=32, lr=0.05, weight_decay=1e-4,
                    schedule="cosine", warmup_epochs=0.0, probe_images=16, jacobian_blocks=1,
                    timing_repeats=1, seeds=2)


def _trained_parts(results, claim_ids=None, control="random-labels"):
    for c in claims():
        if claim_ids is not None and c.id not in claim_ids:
            continue
        for p in c.parts:
            if p.trained and control in c.controls:
                yield c.id, p.name, results["claims"][c.id]["parts"][p.name]


def _reproduce_under(control, tmp_path):
    import torch

    from cnnarch.experiments.reproduce import reproduce

    threads = torch.get_num_threads()
    try:
        return reproduce(DIGITS_TINY, "digits", tmp_path, device="cpu", control=control,
                         only=TWIN_EXPERIMENTS, workers=1)
    finally:
        torch.set_num_threads(threads)


def test_random_labels_control_never_reproduces(tiny_report):
    _, results = tiny_report
    judged = list(_trained_parts(results))
    assert {cid for cid, _, _ in judged} >= {"R1", "R2", "R4", "R5"}
    for cid, name, part in judged:
        assert part["verdict"] != REPRODUCED, (cid, name, part["reason"])
    for cid in ("R1", "R2", "R4"):
        assert results["claims"][cid]["verdict"] != REPRODUCED


def test_permuted_labels_control_from_reproduce(tmp_path):
    results = _reproduce_under("random-labels", tmp_path)
    assert results["config"]["control"] == "random-labels"
    m = results["measurements"]["R2"]
    # the permuted labels reached the training loop: no network learned
    for name, errs in m["final_test_error"].items():
        assert min(errs) >= m["chance_error"] / 2, (name, errs)
    judged = list(_trained_parts(results, {"R1", "R2", "R4", "R5"}))
    assert {cid for cid, _, _ in judged} == {"R1", "R2", "R4", "R5"}
    for cid, name, part in judged:
        assert part["verdict"] != REPRODUCED, (cid, name, part["reason"])


def test_untrained_control_from_reproduce(tmp_path):
    results = _reproduce_under("untrained", tmp_path)
    m = results["measurements"]["R2"]
    assert m["epochs"] == 1  # the one record measured at initialisation
    judged = list(_trained_parts(results, {"R1", "R2", "R4", "R5"}, control="untrained"))
    assert {cid for cid, _, _ in judged} == {"R1", "R2", "R4", "R5"}
    for cid, name, part in judged:
        assert part["verdict"] != REPRODUCED, (cid, name, part["reason"])
    for cid in ("R1", "R2", "R4", "R5"):
        assert results["claims"][cid]["verdict"] != REPRODUCED, results["claims"][cid]["reason"]


def test_untrained_control_trains_nothing():
    from cnnarch.experiments.context import Context

    ctx = Context(DIGITS_TINY, data="digits", seeds=(3,), device="cpu", control="untrained")
    run = ctx.train("resnet20", seed=3)
    assert [h["step"] for h in run.history] == [0] and run.run_dir is None
    import torch

    from cnnarch.models import create_model
    from cnnarch.train.loop import seed_everything

    seed_everything(3)
    fresh = create_model("resnet20", in_chans=1, num_classes=10)
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(),
                                                 fresh.state_dict().values(), strict=True))
    assert 0.0 <= run.history[0]["test_acc"] <= 0.35  # chance is 10 %


@pytest.mark.slow
def test_plain_twins_control_never_reproduces(tmp_path):
    import torch

    from cnnarch.experiments.reproduce import reproduce

    scale = Scale("tiny-control", depths=(20, 32), epochs=4, batch_size=64, lr=0.05, weight_decay=1e-4,
                  schedule="cosine", warmup_epochs=0.0, probe_images=32, jacobian_blocks=2,
                  timing_repeats=1, seeds=2)
    threads = torch.get_num_threads()
    try:
        results = reproduce(scale, "digits", tmp_path, device="cpu", control="plain-twins",
                            only=["degradation", "residuals", "gradient-flow"])
    finally:
        torch.set_num_threads(threads)
    assert results["config"]["control"] == "plain-twins"
    # the shallow net learned: the rules were judged, not gated
    assert max(results["measurements"]["R2"]["final_test_error"]["resnet20"]) < 0.45
    for cid, name, part in _trained_parts(results, {"R1", "R2", "R4", "R5"}):
        if (cid, name) == ("R2", "plain-degrades"):  # about the plain nets: the control leaves it as is
            continue
        assert part["verdict"] != REPRODUCED, (cid, name, part["reason"])
    for cid in ("R4", "R5"):
        assert results["claims"][cid]["verdict"] != REPRODUCED, results["claims"][cid]["reason"]
