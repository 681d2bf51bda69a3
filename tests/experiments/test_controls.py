"""Negative controls, end to end: under each control a trained claim's rule must not say
"reproduced" (a rule that does is a bug in the rule).

- random labels: the shared tiny run trains on random images with random labels;
- plain twins: the residual networks replaced by their plain twins, on digits, long enough
  for the shallow net to learn (so the rules are judged, not stopped by the learning gate).
"""

import pytest

from cnnarch.experiments.claims import REPRODUCED, claims
from cnnarch.experiments.common import Scale


def _trained_parts(results, claim_ids=None):
    for c in claims():
        if claim_ids is not None and c.id not in claim_ids:
            continue
        for p in c.parts:
            if p.trained and "random-labels" in c.controls:
                yield c.id, p.name, results["claims"][c.id]["parts"][p.name]


def test_random_labels_control_never_reproduces(tiny_report):
    _, results = tiny_report
    judged = list(_trained_parts(results))
    assert {cid for cid, _, _ in judged} >= {"R1", "R2", "R4", "R5"}
    for cid, name, part in judged:
        assert part["verdict"] != REPRODUCED, (cid, name, part["reason"])
    for cid in ("R1", "R2", "R4"):
        assert results["claims"][cid]["verdict"] != REPRODUCED


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
