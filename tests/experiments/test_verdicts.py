"""Verdicts follow from the measured numbers: each verdict function, fed synthetic
measurements on both sides of its rule."""

import copy

import pytest

from cnnarch.experiments import aux_heads, degradation, gradient_flow, inception_cost, residuals
from cnnarch.experiments.common import NOT_REPRODUCED, REPRODUCED


def _twins(p20, p56, r20, r56):
    return {"depths": [20, 56], "epochs": 3,
            "final_train_error": {"plain": {"20": p20, "56": p56}, "resnet": {"20": r20, "56": r56}},
            "final_test_error": {"plain": {"20": p20, "56": p56}, "resnet": {"20": r20, "56": r56}}}


@pytest.mark.parametrize("p56, r56, expected", [
    (0.30, 0.02, REPRODUCED),  # plain degrades, ResNet does not
    (0.045, 0.02, NOT_REPRODUCED),  # plain-56 within the 2-point margin of plain-20
    (0.30, 0.10, NOT_REPRODUCED),  # ResNet-56 degrades too
])
def test_r2(p56, r56, expected):
    c = degradation.verdict_r2(_twins(0.03, p56, 0.01, r56))
    assert c["verdict"] == expected
    assert f"{100 * p56:.1f} %" in c["rule"]


def test_r1():
    m = _twins(0.03, 0.3, 0.01, 0.02)
    m["build_and_run"] = {"resnet20": {"ok": True}, "resnet1202": {"ok": True}}
    assert degradation.verdict_r1(m)["verdict"] == REPRODUCED
    m["build_and_run"]["resnet1202"]["ok"] = False
    c = degradation.verdict_r1(m)
    assert c["verdict"] == NOT_REPRODUCED and "resnet1202" in c["rule"]


def test_r3():
    m = {"params_option_a": {"20": {"resnet": 5, "plain": 5}}, "shortcut_params": {"A": 1, "B": 2, "C": 3},
         "state_dict_interchangeable": True, "blocks_differ_only_by_shortcut": True}
    assert degradation.verdict_r3(m)["verdict"] == REPRODUCED
    bad = copy.deepcopy(m)
    bad["params_option_a"]["20"]["plain"] = 4
    assert degradation.verdict_r3(bad)["verdict"] == NOT_REPRODUCED


def _r4(res56_std, ratio_final, ratio20_final=0.45):
    return {"depths": [20, 56],
            "mean_response_std": {"plain20": 1.0, "resnet20": 0.8, "plain56": 1.2, "resnet56": res56_std},
            "mean_ratio_init": {"20": 0.5, "56": 0.5},
            "mean_ratio_final": {"20": ratio20_final, "56": ratio_final},
            "mean_ratio_per_epoch": {}}


def test_r4():
    assert residuals.verdict_r4(_r4(0.6, 0.3))["verdict"] == REPRODUCED
    # Fig. 7's depth ordering of the std is reported, not required
    assert residuals.verdict_r4(_r4(0.9, 0.3))["verdict"] == REPRODUCED
    assert "not ordered by depth" in residuals.verdict_r4(_r4(0.9, 0.3))["rule"]
    assert residuals.verdict_r4(_r4(1.3, 0.3))["verdict"] == NOT_REPRODUCED  # not < plain twin
    assert residuals.verdict_r4(_r4(0.6, 0.7))["verdict"] == NOT_REPRODUCED  # ratio grew
    # the deeper ResNet's layers modify the signal more than the shallower one's
    assert residuals.verdict_r4(_r4(0.6, 0.3, ratio20_final=0.2))["verdict"] == NOT_REPRODUCED


def _r5(res_bn=20.0, plain_none=1e-5, jac_med=1.0, res_trained=2.0):
    prof = lambda f, s=None: {"stem_over_head": f, "spread": s or max(f, 1 / f)}  # noqa: E731
    return {"depth": 56,
            "init_bn": {"plain56": prof(3000.0), "resnet56": prof(res_bn)},
            "init_none": {"plain56": prof(plain_none), "resnet56": prof(100.0)},
            "trained_bn": {"plain56": prof(0.1), "resnet56": prof(res_trained)},
            "jacobian_trained": [{"block": "block2", "with_shortcut": (0.1, jac_med, 3.0),
                                  "without_shortcut": (0.0, 1e-7, 2.0)}]}


def test_r5():
    assert gradient_flow.verdict_r5(_r5())["verdict"] == REPRODUCED
    assert gradient_flow.verdict_r5(_r5(res_bn=500.0))["verdict"] == NOT_REPRODUCED
    assert gradient_flow.verdict_r5(_r5(plain_none=0.5))["verdict"] == NOT_REPRODUCED
    assert gradient_flow.verdict_r5(_r5(jac_med=3.0))["verdict"] == NOT_REPRODUCED
    assert gradient_flow.verdict_r5(_r5(res_trained=300.0))["verdict"] == NOT_REPRODUCED


def _g5(ratio, acc=0.9, none_ratio=None):
    layers = ("conv1", "conv2")

    def grads(r):
        return {"layers": layers, "main_only": (1e-9, 1e-6), "with_aux": (r * 1e-9, r * 1e-6),
                "ratios": (r, r), "aux_weight": 0.3}

    return {"trained_with_aux": grads(ratio), "init_bn": grads(1.0),
            "init_none": grads(ratio if none_ratio is None else none_ratio), "num_classes": 10,
            "final_test_acc": {"with_aux": acc, "without_aux": acc},
            "final_train_acc": {"with_aux": acc, "without_aux": acc}}


def test_g5():
    assert aux_heads.verdict_g5(_g5(1.2))["verdict"] == REPRODUCED
    assert aux_heads.verdict_g5(_g5(1.01))["verdict"] == NOT_REPRODUCED
    # trained net learned but the aux heads add nothing there
    assert aux_heads.verdict_g5(_g5(1.01, none_ratio=50.0))["verdict"] == NOT_REPRODUCED
    # a net that never learned is not counted; the no-normalisation measurement decides
    short = aux_heads.verdict_g5(_g5(1.01, acc=0.1, none_ratio=50.0))
    assert short["verdict"] == REPRODUCED and "not counted" in short["rule"]
    assert aux_heads.verdict_g5(_g5(1.2, acc=0.1, none_ratio=1.0))["verdict"] == NOT_REPRODUCED


def test_g3_g4_need_the_lecture_numbers():
    g3 = {"naive_macs": 854_196_224, "naive_depth": 672, "naive_keeps_size": True,
          "naive_depth_chain": [(192, 416), (416, 832)]}
    assert inception_cost.verdict_g3(g3)["verdict"] == REPRODUCED
    assert inception_cost.verdict_g3(dict(g3, naive_macs=854_000_000))["verdict"] == NOT_REPRODUCED
    assert inception_cost.verdict_g3(dict(g3, naive_depth_chain=[(192, 416), (416, 400)]))["verdict"] == NOT_REPRODUCED
    g4 = {"bottleneck_macs": 271_351_808, "bottleneck_depth": 480, "slide_explained": True,
          "slide_double_counted": "3x3 conv, 192", "module_saving": 3.1, "network_saving": 7.9,
          "network_model": "googlenet"}
    assert inception_cost.verdict_g4(g4)["verdict"] == REPRODUCED
    assert inception_cost.verdict_g4(dict(g4, bottleneck_macs=358_000_000))["verdict"] == NOT_REPRODUCED
    assert inception_cost.verdict_g4(dict(g4, network_saving=1.5))["verdict"] == NOT_REPRODUCED


def test_g1_g2():
    g1 = {"googlenet": {"params": 7, "macs": 1.5e9}, "googlenet_naive": {"params": 90, "macs": 12e9},
          "resnet_macs": {n: v * 1e9 for n, v in zip(inception_cost.RESNETS, (1.8, 3.6, 4.1, 7.8, 11.5), strict=True)},
          "resnet_params": {n: 11 for n in inception_cost.RESNETS}}
    assert inception_cost.verdict_g1(g1)["verdict"] == REPRODUCED
    g1["googlenet"]["macs"] = 2e9
    assert inception_cost.verdict_g1(g1)["verdict"] == NOT_REPRODUCED
    g2 = {"input_shape": [192, 28, 28], "output_shape": [256, 28, 28], "expected_shape": [256, 28, 28],
          "branch_depths": [64, 128, 32, 32], "concat_matches_branches": True, "branch_kernels": [1, 3, 5],
          "has_pool_branch": True}
    assert inception_cost.verdict_g2(g2)["verdict"] == REPRODUCED
    assert inception_cost.verdict_g2(dict(g2, concat_matches_branches=False))["verdict"] == NOT_REPRODUCED
