"""The counting results render themselves: tables aligned, figures those of the counts."""

import pytest

from cnnarch.analysis.summary import inception_cost_summary, summarize
from cnnarch.analysis.tables import giga_or_mega, signed_diff, text_table
from cnnarch.errors import UserError


def test_text_table_aligns_columns():
    text = text_table(["name", "n"], [["a", 1], ["long name", 1234]], right={1})
    assert text.splitlines() == ["name          n", "a             1", "long name  1234"]
    assert giga_or_mega(1_814_073_344) == "1.814 G" and giga_or_mega(40_551_040) == "40.6 M"
    assert signed_diff(0.04) == "0.0" and signed_diff(-0.25) == "-0.2" and signed_diff(56.1) == "+56.1"


def test_summary_renders_its_counts():
    s = summarize("resnet20")
    text = s.render()
    assert text.splitlines()[0] == "resnet20: input 3x32x32, eval mode"
    assert f"total: params {s.result.params:,}; MACs {s.result.macs:,}" in text
    assert [r["name"] for r in s.to_dict()["rows"]] == [r.name for r in s.rows]
    assert "compare" not in s.to_dict()


def test_summary_beside_the_paper():
    s = summarize("resnet50", compare_paper=True, stride_at="1x1")
    assert s.to_dict()["options"] == {"stride_at": "1x1", "aux": False}
    assert "ours: 3.858 G MACs (v1, stride on the first 1x1 as the paper)" in s.render()
    g = summarize("googlenet", compare_paper=True)
    assert isinstance(g.compare, tuple) and [c["name"] for c in g.to_dict()["compare"]][:2] == [
        "conv1", "pool1"]


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"inception": "naive"}, "has no option 'inception'"),
    ({"aux": True}, "no auxiliary classifiers"),
])
def test_summary_options_that_do_not_apply(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        summarize("resnet50", **kwargs)


def test_inception_cost_summary():
    s = inception_cost_summary("googlenet_small")
    text = s.render()
    assert "= 672" in text and "= 480" in text and "whole network: bottleneck 5,983,402" in text
    assert s.to_dict()["network"]["model"] == "googlenet_small"
