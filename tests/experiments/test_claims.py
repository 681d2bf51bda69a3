"""The claim registry: one definition per claim, three verdicts, rule history, scales."""

import pytest

from cnnarch.experiments import claims as reg
from cnnarch.experiments.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    Claim,
    Part,
    Rule,
    inconclusive,
    judge_claim,
    not_reproduced,
    reproduced,
)


def _rule(verdict, version=1, reason="r"):
    make = {REPRODUCED: reproduced, NOT_REPRODUCED: not_reproduced, INCONCLUSIVE: inconclusive}[verdict]
    return Rule(version, f"always {verdict}", lambda m: make(reason, x=m.get("x")))


def _claim(*verdicts, scales=None):
    parts = tuple(Part(f"p{i}", _rule(v), scales=scales if i == 0 else None, trained=True)
                  for i, v in enumerate(verdicts))
    return Claim("T1", "a test claim", "exp", parts)


@pytest.mark.parametrize("verdicts, expected", [
    ((REPRODUCED, REPRODUCED), REPRODUCED),
    ((REPRODUCED, NOT_REPRODUCED), NOT_REPRODUCED),
    ((INCONCLUSIVE, NOT_REPRODUCED), NOT_REPRODUCED),
    ((REPRODUCED, INCONCLUSIVE), INCONCLUSIVE),
])
def test_claim_verdict_from_parts(verdicts, expected):
    j = judge_claim(_claim(*verdicts), {"x": 1, "seeds": [0, 1, 2]}, "quick")
    assert j["verdict"] == expected
    assert [p["verdict"] for p in j["parts"].values()] == list(verdicts)
    assert j["parts"]["p0"]["measured"] == {"x": 1} and j["seeds"] == [0, 1, 2]


def test_part_not_testable_at_a_scale_is_left_out():
    c = _claim(NOT_REPRODUCED, REPRODUCED, scales=frozenset({"full"}))
    j = judge_claim(c, {}, "quick")
    assert j["parts"]["p0"]["verdict"] == reg.NOT_TESTED
    assert j["verdict"] == REPRODUCED  # the only testable part holds
    assert judge_claim(c, {}, "full")["verdict"] == NOT_REPRODUCED


def test_part_whose_experiment_did_not_run_blocks_reproduced():
    c = Claim("T2", "s", "exp", (Part("a", _rule(REPRODUCED)),
                                 Part("b", _rule(REPRODUCED), experiment="other")))
    j = judge_claim(c, {}, "quick", ran=["exp"])
    assert j["parts"]["b"]["verdict"] == NOT_RUN and j["verdict"] == INCONCLUSIVE
    assert judge_claim(c, {}, "quick", ran=[])["verdict"] == NOT_RUN
    assert judge_claim(c, {}, "quick", ran=["exp", "other"])["verdict"] == REPRODUCED


def test_earlier_rule_versions_are_judged_too():
    part = Part("a", _rule(NOT_REPRODUCED, version=2), history=(_rule(REPRODUCED, version=1),))
    j = judge_claim(Claim("T3", "s", "exp", (part,)), {}, "quick")
    p = j["parts"]["a"]
    assert p["version"] == 2 and p["verdict"] == NOT_REPRODUCED
    assert p["history"] == [{"version": 1, "rule": "always reproduced", "verdict": REPRODUCED, "reason": "r"}]


def test_unknown_verdict_refused():
    with pytest.raises(ValueError):
        reg.PartResult("maybe", "r")


def test_registry_is_the_one_list(monkeypatch):
    ids = reg.claim_ids()
    for cid in ("G1", "G2", "G3", "G4", "G5", "R1", "R2", "R3", "R4", "R5"):
        assert cid in ids
    assert list(ids[:10]) == ["G1", "G2", "G3", "G4", "G5", "R1", "R2", "R3", "R4", "R5"]
    names = reg.experiment_names()
    assert {"inception-cost", "degradation", "residuals", "gradient-flow", "aux-heads"} <= set(names)
    for c in reg.claims():
        assert c.experiment in names, c.id
        assert c.figure and c.caption and c.draw is not None, c.id
        assert all(k in reg.CONTROLS for k in c.controls), c.id
        if c.trained:
            assert c.controls, f"{c.id} has trained parts but no negative control"
    figures = [c.figure for c in reg.claims()]
    assert len(set(figures)) == len(figures), "one distinct figure per claim"
    from cnnarch.cli import build_parser

    args = build_parser().parse_args(["experiment", names[0]])
    assert args.name == names[0]


def test_add_parts_and_duplicates(monkeypatch):
    monkeypatch.setattr(reg, "_CLAIMS", {})
    monkeypatch.setattr(reg, "_PENDING_PARTS", {})
    reg.add_parts("T4", Part("late", _rule(REPRODUCED)))  # before the claim exists
    reg.register(Claim("T4", "s", "exp", (Part("a", _rule(REPRODUCED)),)))
    assert [p.name for p in reg._CLAIMS["T4"].parts] == ["a", "late"]
    with pytest.raises(ValueError):
        reg.add_parts("T4", Part("a", _rule(REPRODUCED)))
    with pytest.raises(ValueError):
        reg.register(Claim("T4", "s", "exp", ()))


def test_spread_and_every_seed():
    assert reg.spread([1.0, 3.0, 2.0]) == {"mean": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert reg.every_seed([1, 2], lambda v: v > 0) and not reg.every_seed([1, -2], lambda v: v > 0)
    assert not reg.every_seed([], lambda v: True)
    assert reg.fmt_spread([0.5]) == "0.5" and "3 seeds" in reg.fmt_spread([1, 2, 3])


def test_an_experiment_runs_with_the_owner_of_the_claims_it_adds_parts_to():
    from cnnarch.experiments.reproduce import _check_names

    assert _check_names(["inception-trained"]) == ["inception-cost", "inception-trained"]
    assert _check_names(["aux-heads"]) == ["inception-cost", "aux-heads"]  # G2 is inception-cost's
    assert _check_names(["residuals"]) == ["residuals"]
    assert _check_names(None) == list(reg.experiment_names())
