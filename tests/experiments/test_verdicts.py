"""Each rule, fed synthetic per-seed measurements on both sides of it, and under the shapes
its negative controls produce (twins that are equal, networks that learned nothing)."""

import copy

import pytest

from cnnarch.experiments import degradation, gradient_flow, inception_cost, residuals
from cnnarch.experiments.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def _twins(p20, p56, r20, r56, test=None):
    """Per-seed final errors (lists) of plain/ResNet 20 and 56; test error = training error
    + 2 points unless given."""
    tr = {"plain20": p20, "plain56": p56, "resnet20": r20, "resnet56": r56}
    te = test or {k: [v + 0.02 for v in vals] for k, vals in tr.items()}
    return {"seeds": [0, 1, 2], "depths": [20, 56], "final_train_error": tr, "final_test_error": te,
            "chance_error": 0.9, "test_error_step": 1 / 360}


GOOD = dict(p20=[0.02, 0.03, 0.02], p56=[0.70, 0.76, 0.82], r20=[0.01, 0.01, 0.015], r56=[0.015, 0.02, 0.01])


def _v(judge, m):
    return judge(m).verdict


def test_r2_plain_degrades():
    assert _v(degradation.judge_r2_plain, _twins(**GOOD)) == REPRODUCED
    # one seed without degradation: not beyond the spread -> not reproduced either way
    m = _twins(**dict(GOOD, p56=[0.70, 0.76, 0.03]))
    assert _v(degradation.judge_r2_plain, m) != REPRODUCED
    # plain-twins-like: deep and shallow equal
    assert _v(degradation.judge_r2_plain, _twins(**dict(GOOD, p56=GOOD["p20"]))) != REPRODUCED
    # random labels: nothing learned -> inconclusive
    m = _twins(**GOOD, test={k: [0.9, 0.88, 0.91] for k in ("plain20", "plain56", "resnet20", "resnet56")})
    assert _v(degradation.judge_r2_plain, m) == INCONCLUSIVE
    # ordered beyond the spread, but one seed's degradation is within the 2-point margin: not
    # evidence against the claim either -> inconclusive (v2 said not reproduced)
    m = _twins(**dict(GOOD, p20=[0.02, 0.02, 0.02], p56=[0.05, 0.05, 0.035]))
    assert _v(degradation.judge_r2_plain, m) == INCONCLUSIVE
    assert degradation.judge_r2_plain_v2(m).verdict == NOT_REPRODUCED


def test_r2_resnet_does_not_degrade():
    assert _v(degradation.judge_r2_resnet, _twins(**GOOD)) == REPRODUCED
    # the plain-twins control: plain-56 in the ResNet-56 slot degrades -> not reproduced
    ctrl = _twins(**dict(GOOD, r20=GOOD["p20"], r56=GOOD["p56"]))
    assert _v(degradation.judge_r2_resnet, ctrl) == NOT_REPRODUCED
    assert _v(degradation.judge_r2_resnet, _twins(**dict(GOOD, r56=[0.05, 0.06, 0.05]))) == NOT_REPRODUCED
    # mean gap beyond the spread, but the deeper ResNet is lower in one of 10 seeds -> inconclusive
    ten = {"seeds": list(range(10)), "depths": [20, 56], "chance_error": 0.9,
           "final_train_error": {"resnet20": [0.0] * 9 + [0.3], "resnet56": [0.4] * 9 + [0.2]}}
    ten["final_test_error"] = ten["final_train_error"]
    assert _v(degradation.judge_r2_resnet, ten) == INCONCLUSIVE
    assert degradation.judge_r2_resnet_v1(ten).verdict == NOT_REPRODUCED


def test_r1_parts():
    m = _twins(**GOOD)
    m["build_and_run"] = {"resnet20": {"ok": True}, "resnet1202": {"ok": True}}
    assert _v(degradation.judge_r1_builds, m) == REPRODUCED
    assert _v(degradation.judge_r1_trains, m) == REPRODUCED
    bad = copy.deepcopy(m)
    bad["build_and_run"]["resnet1202"]["ok"] = False
    res = degradation.judge_r1_builds(bad)
    assert res.verdict == NOT_REPRODUCED and "resnet1202" in res.reason
    # plain-twins control: the "ResNet" is the plain net -> equal, not reproduced
    ctrl = _twins(**dict(GOOD, r20=GOOD["p20"], r56=GOOD["p56"]))
    assert _v(degradation.judge_r1_trains, ctrl) != REPRODUCED
    # random labels (the case: ResNet-56 at 87.9 % training error)
    rnd = _twins(p20=[0.9] * 3, p56=[0.9] * 3, r20=[0.88] * 3, r56=[0.879] * 3)
    assert _v(degradation.judge_r1_trains, rnd) == INCONCLUSIVE
    assert "did not learn" in degradation.judge_r1_trains(rnd).reason


def test_r1_deeper_lower_three_ways():
    def with_test(r20, r56):
        return _twins(**GOOD, test={"plain20": [0.05] * 3, "plain56": [0.7] * 3, "resnet20": r20, "resnet56": r56})

    assert _v(degradation.judge_r1_deeper_lower, with_test([0.09, 0.088, 0.091], [0.065, 0.064, 0.066])) == REPRODUCED
    assert _v(degradation.judge_r1_deeper_lower, with_test([0.065, 0.064, 0.066], [0.09, 0.088, 0.091])) == NOT_REPRODUCED
    res = degradation.judge_r1_deeper_lower(with_test([0.02, 0.03, 0.025], [0.025, 0.02, 0.03]))
    assert res.verdict == INCONCLUSIVE and "seed spread" in res.reason and "ceiling" not in res.reason
    at_ceiling = with_test([0.02, 0.03, 0.025], [0.025, 0.02, 0.03])
    at_ceiling["final_train_error"].update(resnet20=[0.001] * 3, resnet56=[0.0] * 3)
    res = degradation.judge_r1_deeper_lower(at_ceiling)
    assert res.verdict == INCONCLUSIVE and "ceiling" in res.reason
    assert _v(degradation.judge_r1_deeper_lower, _twins(**GOOD, test={
        k: [0.9] * 3 for k in ("plain20", "plain56", "resnet20", "resnet56")})) == INCONCLUSIVE


def test_r3():
    m = {"params_option_a": {"20": {"resnet": 5, "plain": 5}}, "shortcut_params": {"A": 1, "B": 2, "C": 3},
         "state_dict_interchangeable": True, "blocks_differ_only_by_shortcut": True}
    assert _v(degradation.judge_r3, m) == REPRODUCED
    bad = copy.deepcopy(m)
    bad["params_option_a"]["20"]["plain"] = 4
    assert _v(degradation.judge_r3, bad) == NOT_REPRODUCED


def _r4(std=None, r0=(0.5, 0.5, 0.5), r1=(0.3, 0.3, 0.3), ep=None, test=0.05):
    std = std or {"plain20": [1.0] * 3, "resnet20": [0.8] * 3, "plain56": [1.2] * 3, "resnet56": [0.6] * 3}
    ep = ep or {"plain20": [8, 7, 8], "resnet20": [4, 5, 4], "plain56": [None] * 3, "resnet56": [6, 5, 6]}
    return {"seeds": [0, 1, 2], "depths": [20, 56], "mean_response_std": std,
            "mean_ratio_init": {"20": list(r0), "56": list(r0)},
            "mean_ratio_final": {"20": list(r1), "56": list(r1)},
            "plain_ratio_init": {"20": [1.3] * 3, "56": [1.3] * 3},
            "plain_ratio_final": {"20": [1.28] * 3, "56": [1.28] * 3},
            "epochs_to_target": ep, "target_error": 0.1, "chance_error": 0.9,
            "final_test_error": {k: [test] * 3 for k in ("plain20", "resnet20", "plain56", "resnet56")}}


def test_r4_parts():
    m = _r4()
    for judge in (residuals.judge_resnet_vs_plain, residuals.judge_by_depth, residuals.judge_shrinks,
                  residuals.judge_faster):
        assert _v(judge, m) == REPRODUCED, judge.__name__
        assert _v(judge, _r4(test=0.9)) == INCONCLUSIVE, judge.__name__  # random labels
    # plain-twins control: the ResNet slot holds the plain net -> equal stds, equal epochs
    twin_std = {"plain20": [1.0] * 3, "resnet20": [1.0] * 3, "plain56": [1.2] * 3, "resnet56": [1.2] * 3}
    assert _v(residuals.judge_resnet_vs_plain, _r4(std=twin_std)) == NOT_REPRODUCED
    assert _v(residuals.judge_by_depth, _r4(std=twin_std)) == NOT_REPRODUCED
    twin_ep = {"plain20": [8, 7, 8], "resnet20": [8, 7, 8], "plain56": [None] * 3, "resnet56": [None] * 3}
    assert _v(residuals.judge_faster, _r4(ep=twin_ep)) == NOT_REPRODUCED
    assert _v(residuals.judge_faster, _r4(ep={k: [None] * 3 for k in twin_ep})) == INCONCLUSIVE
    # plain-twins control: the ResNet's ratio shrinks only as much as the plain twin's
    twin = _r4(r0=(1.3, 1.3, 1.3), r1=(1.28, 1.28, 1.28))
    assert _v(residuals.judge_shrinks, twin) == NOT_REPRODUCED
    assert _v(residuals.judge_shrinks_v2, twin) == REPRODUCED  # why v2 was replaced
    # the residual grows in one seed
    assert _v(residuals.judge_shrinks, _r4(r1=(0.3, 0.6, 0.3))) == NOT_REPRODUCED
    # v2 of by-depth holds on numbers where v3 fails (the reason it was replaced)
    deep_std = {"plain20": [1.0] * 3, "resnet20": [0.8] * 3, "plain56": [1.2] * 3, "resnet56": [0.9] * 3}
    m = _r4(std=deep_std)
    m["mean_ratio_final"]["56"] = [0.2] * 3
    assert _v(residuals.judge_by_depth, m) == NOT_REPRODUCED
    assert _v(residuals.judge_by_depth_v2, m) == REPRODUCED


def _prof(f, s=None):
    return {"stem_over_head": f, "spread": s or max(f, 1 / f)}


def _r5(res_bn=20.0, plain_bn=3000.0, plain_none=1e-5, res_none=2.0, zero=1.0, jac_med=1.0,
        res_trained=2.0, plain_trained=40.0, test=0.05, with_shortcut=True):
    three = lambda f: [_prof(f)] * 3  # noqa: E731
    size = {"init_bn": {"plain56": three(plain_bn), "resnet56": three(res_bn)},
            "init_none": {"plain56": three(plain_none), "resnet56": three(res_none),
                          "resnet56-zero-init": three(zero)}}
    jac = [{"block": "block2", "with_shortcut": (0.1, jac_med, 3.0) if with_shortcut else None,
            "without_shortcut": (0.0, 1e-7, 2.0)}]
    return {"seeds": [0, 1, 2], "depth": 56, "sizes": [8, 32], "native_size": 8, "judged_size": 32,
            "init_bn": {"8": size["init_bn"], "32": size["init_bn"]},
            "init_none": {"8": size["init_none"], "32": size["init_none"]},
            "trained_bn": {"plain56": three(plain_trained), "resnet56": three(res_trained)},
            "jacobian_trained": [jac] * 3, "final_test_error": {"resnet20": [test] * 3},
            "gate_model": "resnet20",
            "chance_error": 0.9}


def test_r5_parts():
    g = gradient_flow
    for judge in (g.judge_bn_init, g.judge_no_norm_init, g.judge_trained, g.judge_jacobian):
        assert _v(judge, _r5()) == REPRODUCED, judge.__name__
    assert _v(g.judge_bn_init, _r5(res_bn=500.0)) == NOT_REPRODUCED
    assert _v(g.judge_bn_init, _r5(res_bn=3000.0)) == NOT_REPRODUCED  # plain twins: equal
    assert _v(g.judge_no_norm_init, _r5(plain_none=0.3)) == NOT_REPRODUCED
    exploding = g.judge_no_norm_init(_r5(res_none=2.3e4))  # symmetric band: growth fails
    assert exploding.verdict == NOT_REPRODUCED and "explodes" in exploding.reason
    assert "zero-initialised" in exploding.reason
    assert _v(g.judge_no_norm_init_v1, _r5(res_none=2.3e4)) == REPRODUCED  # why v1 was replaced
    assert _v(g.judge_trained, _r5(res_trained=40.0)) == NOT_REPRODUCED  # plain twin as good
    assert _v(g.judge_trained_v1, _r5(res_trained=40.0)) == REPRODUCED
    assert _v(g.judge_trained, _r5(test=0.9)) == INCONCLUSIVE
    assert _v(g.judge_jacobian, _r5(jac_med=3.0)) == NOT_REPRODUCED
    assert _v(g.judge_jacobian, _r5(with_shortcut=False)) == NOT_REPRODUCED  # plain twins
    assert g.judged_size([8, 32]) == 32 and g.judged_size([8]) == 8 and g.judged_size([32]) == 32


def test_g1_to_g4_need_the_lecture_numbers():
    g3 = {"naive_macs": 854_196_224, "naive_depth": 672, "naive_keeps_size": True,
          "naive_depth_chain": [(192, 416), (416, 832)]}
    assert inception_cost.verdict_g3(g3).verdict == REPRODUCED
    assert inception_cost.verdict_g3(dict(g3, naive_macs=854_000_000)).verdict == NOT_REPRODUCED
    assert inception_cost.verdict_g3(dict(g3, naive_depth_chain=[(192, 416), (416, 400)])).verdict == NOT_REPRODUCED
    g4 = {"bottleneck_macs": 271_351_808, "bottleneck_depth": 480, "slide_explained": True,
          "slide_double_counted": "3x3 conv, 192", "module_saving": 3.1, "network_saving": 7.9,
          "network_model": "googlenet"}
    assert inception_cost.verdict_g4(g4).verdict == REPRODUCED
    assert inception_cost.verdict_g4(dict(g4, bottleneck_macs=358_000_000)).verdict == NOT_REPRODUCED
    assert inception_cost.verdict_g4(dict(g4, network_saving=1.5)).verdict == NOT_REPRODUCED
    g1 = {"googlenet": {"params": 7, "macs": 1.5e9}, "googlenet_naive": {"params": 90, "macs": 12e9},
          "resnet_macs": {n: v * 1e9 for n, v in zip(inception_cost.RESNETS, (1.8, 3.6, 4.1, 7.8, 11.5), strict=True)},
          "resnet_params": {n: 11 for n in inception_cost.RESNETS}}
    assert inception_cost.verdict_g1(g1).verdict == REPRODUCED
    g1["googlenet"]["macs"] = 2e9
    assert inception_cost.verdict_g1(g1).verdict == NOT_REPRODUCED
    g2 = {"input_shape": [192, 28, 28], "output_shape": [256, 28, 28], "expected_shape": [256, 28, 28],
          "branch_depths": [64, 128, 32, 32], "concat_matches_branches": True, "branch_kernels": [1, 3, 5],
          "has_pool_branch": True}
    assert inception_cost.verdict_g2(g2).verdict == REPRODUCED
    assert inception_cost.verdict_g2(dict(g2, concat_matches_branches=False)).verdict == NOT_REPRODUCED


@pytest.mark.parametrize("low, high, expected", [
    ([0.1, 0.11, 0.12], [0.3, 0.31, 0.32], REPRODUCED),
    ([0.3, 0.31, 0.32], [0.1, 0.11, 0.12], NOT_REPRODUCED),
    ([0.1, 0.2, 0.15], [0.16, 0.12, 0.18], INCONCLUSIVE),
    ([0.1], [0.2], REPRODUCED),
    ([0.2], [0.1], NOT_REPRODUCED),
    ([0.1], [0.1], INCONCLUSIVE),  # a tie is not the opposite ordering
    ([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], INCONCLUSIVE),
])
def test_compare_lower_beyond_the_seed_spread(low, high, expected):
    assert degradation.compare_lower(low, high, "a", "b", "error").verdict == expected
