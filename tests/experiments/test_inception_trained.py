"""G4 trained (bottleneck vs linear vs naive modules at equal steps): both rules on both sides,
and the random-labels control (every variant at chance: neither rule may say "reproduced")."""

import dataclasses

import pytest

from cnnarch.experiments import inception_trained
from cnnarch.experiments.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTED,
    REPRODUCED,
    get_claim,
    judge_claim,
)
from cnnarch.experiments.common import Scale
from cnnarch.experiments.context import Context

MACS = {"bottleneck": 97.5e6, "linear": 97.5e6, "naive": 994.0e6}


def _m(bottleneck, linear, naive, macs=MACS, num_classes=10):
    return {"trained": {"seeds": list(range(len(bottleneck))), "num_classes": num_classes, "macs": macs,
                        "epochs": 2, "batch_size": 32,
                        "test_acc": {"bottleneck": bottleneck, "linear": linear, "naive": naive}}}


def test_cost_accuracy_rule_both_sides():
    j = inception_trained.judge_cost_accuracy
    assert j(_m([0.95, 0.94, 0.96], [0.9] * 3, [0.955, 0.93, 0.95])).verdict == REPRODUCED  # within
    assert j(_m([0.97, 0.975, 0.98], [0.9] * 3, [0.90, 0.91, 0.905])).verdict == REPRODUCED  # above
    below = _m([0.80, 0.81, 0.82], [0.9] * 3, [0.95, 0.96, 0.955])
    assert j(below).verdict == NOT_REPRODUCED  # the reduction lost what mattered
    no_saving = _m([0.95] * 3, [0.9] * 3, [0.95] * 3, macs=dict(MACS, naive=150e6))
    assert j(no_saving).verdict == NOT_REPRODUCED
    assert j(_m([0.95], [0.9], [0.95])).verdict == INCONCLUSIVE  # one seed
    assert j({"trained": None}).verdict == NOT_TESTED


def test_nonlinearity_rule_both_sides():
    j = inception_trained.judge_nonlinearity
    assert j(_m([0.95, 0.96, 0.955], [0.90, 0.91, 0.905], [0.95] * 3)).verdict == REPRODUCED
    assert j(_m([0.90, 0.91, 0.905], [0.95, 0.96, 0.955], [0.95] * 3)).verdict == NOT_REPRODUCED
    assert j(_m([0.95, 0.93, 0.96], [0.94, 0.95, 0.945], [0.95] * 3)).verdict == INCONCLUSIVE


def test_random_labels_every_variant_at_chance_is_never_reproduced():
    chance = _m([0.11, 0.09, 0.10], [0.10, 0.12, 0.08], [0.10, 0.10, 0.11])
    assert inception_trained.judge_cost_accuracy(chance).verdict == INCONCLUSIVE
    assert inception_trained.judge_nonlinearity(chance).verdict == INCONCLUSIVE
    g4 = judge_claim(get_claim("G4"), chance, "tiny", ran=["inception-trained"])
    assert g4["parts"]["trained-cost-accuracy"]["verdict"] == INCONCLUSIVE
    assert g4["verdict"] != REPRODUCED


def test_ordering_needs_every_seed_and_the_spread():
    assert inception_trained.ordering([0.9, 0.91], [0.8, 0.81])[0] == "above"
    assert inception_trained.ordering([0.9, 0.79], [0.8, 0.81])[0] == "within"  # one seed reversed
    assert inception_trained.ordering([0.8, 0.81], [0.9, 0.91])[0] == "below"


TINY = Scale("tiny", depths=(20,), epochs=1, batch_size=32, lr=0.05, weight_decay=1e-4,
             schedule="cosine", warmup_epochs=0.0, aux_epochs=0, aux_batch_size=16, probe_images=16,
             jacobian_blocks=1, timing_repeats=1, seeds=3, inception_ablation_epochs=1)


@pytest.mark.slow  # 3 seeds x 3 variants x 2 steps of googlenet_small, the naive one ~10x the cost
def test_random_labels_control_on_real_runs():
    ctx = Context(TINY, data="synthetic:1x8x8:4:256", seeds=(0, 1, 2), device="cpu", iterations=2)
    m = inception_trained.run(ctx)["measurements"]["G4"]
    t = m["trained"]
    assert set(t["test_acc"]) == {"bottleneck", "linear", "naive"}
    assert all(len(v) == 3 for v in t["test_acc"].values())
    assert t["macs"]["naive"] > 2 * t["macs"]["bottleneck"]
    assert t["macs"]["linear"] == t["macs"]["bottleneck"]
    for judge in (inception_trained.judge_cost_accuracy, inception_trained.judge_nonlinearity):
        assert judge(m).verdict != REPRODUCED


def test_not_run_at_a_scale_without_the_comparison():
    ctx = Context(dataclasses.replace(TINY, inception_ablation_epochs=0), data="synthetic:1x8x8:4:64",
                  seeds=(0,), device="cpu")
    m = inception_trained.run(ctx)["measurements"]["G4"]
    assert m == {"trained": None}
    assert inception_trained.judge_nonlinearity(m).verdict == NOT_TESTED


def test_a_scale_without_the_naive_variant_judges_only_the_pair_it_trained():
    m = _m([0.95, 0.96, 0.955], [0.90, 0.91, 0.905], [0.5] * 3)
    del m["trained"]["test_acc"]["naive"]
    cost = inception_trained.judge_cost_accuracy(m)
    assert cost.verdict == NOT_TESTED and "naive variant is not trained" in cost.reason
    assert inception_trained.judge_nonlinearity(m).verdict == REPRODUCED


def test_a_scale_trains_only_its_variants():
    sc = dataclasses.replace(TINY, inception_variants=("bottleneck", "linear"))
    ctx = Context(sc, data="synthetic:1x8x8:4:64", seeds=(0, 1), device="cpu", iterations=2)
    m = inception_trained.run(ctx)["measurements"]["G4"]
    assert set(m["trained"]["test_acc"]) == {"bottleneck", "linear"}
    assert set(m["trained"]["macs"]) == {"bottleneck", "linear", "naive"}  # counted, not trained
    assert inception_trained.judge_cost_accuracy(m).verdict == NOT_TESTED


def _longer(m, bottleneck, linear):
    m["trained"]["longer"] = {"seeds": list(range(len(bottleneck))), "epochs": 5, "iterations": 0,
                              "batch_size": 64, "steps": 110,
                              "test_acc": {"bottleneck": bottleneck, "linear": linear}}
    return m


def test_nonlinearity_longer_rule_both_sides():
    j = inception_trained.judge_nonlinearity_longer
    base = lambda: _m([0.4] * 3, [0.6] * 3, [0.3] * 3)  # noqa: E731 (the 44-step race, not judged here)
    assert j(_longer(base(), [0.98, 0.985, 0.99], [0.95, 0.955, 0.96])).verdict == REPRODUCED
    assert j(_longer(base(), [0.95, 0.955, 0.96], [0.98, 0.985, 0.99])).verdict == NOT_REPRODUCED
    assert j(_longer(base(), [0.975, 0.98, 0.983], [0.978, 0.976, 0.981])).verdict == INCONCLUSIVE
    assert j(_longer(base(), [0.98], [0.95])).verdict == INCONCLUSIVE  # one seed
    assert j(base()).verdict == NOT_TESTED  # the scale did not train the longer pair
    assert j({"trained": None}).verdict == NOT_TESTED


def test_nonlinearity_longer_at_chance_is_inconclusive():
    chance = _longer(_m([0.1] * 3, [0.1] * 3, [0.1] * 3), [0.11, 0.09, 0.10], [0.10, 0.12, 0.08])
    assert inception_trained.judge_nonlinearity_longer(chance).verdict == INCONCLUSIVE
    g4 = judge_claim(get_claim("G4"), chance, "tiny", ran=["inception-trained"])
    assert g4["parts"]["trained-nonlinearity-longer"]["verdict"] == INCONCLUSIVE


def test_linear_and_bottleneck_start_from_the_same_weights():
    """The longer race pairs G5's bottleneck run with a linear one of the same seed: the two
    variants differ only in the ReLUs, so a seed gives them the same initial weights."""
    import torch

    from cnnarch.models import create_model

    nets = []
    for mode in ("bottleneck", "linear"):
        torch.manual_seed(3)
        nets.append(create_model("googlenet_small", in_chans=1, num_classes=10, inception=mode))
    a, b = (n.state_dict() for n in nets)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # G5's pair and the linear net, 2 seeds x 2 steps each
def test_longer_race_on_real_runs_reuses_g5s_bottleneck_run():
    sc = dataclasses.replace(TINY, aux_epochs=1, inception_linear_longer=True)
    ctx = Context(sc, data="synthetic:1x8x8:4:128", seeds=(0, 1), device="cpu", iterations=2)
    from cnnarch.experiments import aux_heads

    g5 = aux_heads.run(ctx)["measurements"]["G5"]
    lg = inception_trained.run(ctx)["measurements"]["G4"]["trained"]["longer"]
    assert lg["test_acc"]["bottleneck"] == g5["trained_bn"]["with_aux"]["test_acc"]
    assert len(lg["test_acc"]["linear"]) == 2 and lg["steps"] == 2


def test_the_run_length_names_epochs_batch_and_steps():
    assert inception_trained.run_length(1, 32, 44) == "1 epoch at batch 32 (44 steps)"
    assert inception_trained.run_length(10, 128, None) == "10 epochs at batch 128"


def test_the_naive_variant_trains_at_its_own_lr_where_the_scale_sets_one(monkeypatch):
    from cnnarch.experiments import context

    used = {}

    def fake_train(self, model, *, seed, tag=None, model_kwargs=None, **overrides):
        used[model_kwargs["inception"]] = (self.scale.lr, tag)
        history = [{"epoch": 1, "step": 2, "test_acc": 0.5, "train_acc": 0.5}]
        return context.TrainedRun(None, history, {}, None)

    monkeypatch.setattr(context.Context, "train", fake_train)
    sc = dataclasses.replace(TINY, aux_lr=0.05, inception_naive_lr=0.005)
    t = inception_trained.run(Context(sc, data="synthetic:1x8x8:4:64", seeds=(0, 1), device="cpu"))
    t = t["measurements"]["G4"]["trained"]
    assert used["bottleneck"][0] == used["linear"][0] == 0.05 and used["naive"][0] == 0.005
    assert used["naive"][1] != "googlenet_small-naive-g4"  # a run folder of the shared lr is not reused
    assert t["lr"] == {"bottleneck": 0.05, "linear": 0.05, "naive": 0.005}
    assert "peak lr 0.05 (naive 0.005)" in inception_trained.judge_cost_accuracy({"trained": t}).reason

    used.clear()
    t = inception_trained.run(Context(TINY, data="synthetic:1x8x8:4:64", seeds=(0, 1), device="cpu"))
    assert {lr for lr, _ in used.values()} == {TINY.aux_lr}
    assert "(naive" not in inception_trained.judge_cost_accuracy(t["measurements"]["G4"]).reason
