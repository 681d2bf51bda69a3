"""Complexity accounting: exact MACs from docs/reference.md, hooks vs FlopCounterMode, Table 1 rows
against closed-form formulas, the lecture's Inception cost example."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnarch.analysis import (
    GOOGLENET_PAPER_TABLE1,
    compare_googlenet_paper,
    compare_resnet_paper,
    complexity,
    inception_cost_example,
    model_complexity,
    naive_vs_bottleneck,
    paper_rows,
)
from cnnarch.analysis.complexity import (
    LECTURE_BOTTLENECK_DEPTH,
    LECTURE_BOTTLENECK_MACS,
    LECTURE_NAIVE_DEPTH,
    LECTURE_NAIVE_MACS,
)
from cnnarch.errors import UserError
from cnnarch.models import MODELS, TABLE1, create_model, list_models

# docs/reference.md, GMACs to 3 decimals -> the exact integer our counter gives (single image).
EXACT_MACS = [
    ("resnet18", {}, 1.814, 1_814_073_344),
    ("resnet34", {}, 3.664, 3_663_761_408),
    ("resnet50", {}, 4.089, 4_089_184_256),  # v1.5: stride on the 3x3 (torchvision)
    ("resnet50", {"stride_at": "1x1"}, 3.858, 3_857_973_248),  # v1: the paper
    ("resnet101", {}, 7.801, 7_801_405_440),
    ("resnet101", {"stride_at": "1x1"}, 7.570, 7_570_194_432),
    ("resnet152", {}, 11.514, 11_513_626_624),
    ("resnet152", {"stride_at": "1x1"}, 11.282, 11_282_415_616),
    ("googlenet_tv", {}, 1.498, 1_498_376_192),
    ("googlenet", {}, 1.583, 1_582_671_872),  # paper-faithful, no aux
]


@pytest.mark.parametrize(("name", "kwargs", "gmacs", "exact"), EXACT_MACS)
def test_macs_match_reference(name, kwargs, gmacs, exact):
    result = complexity(name, **kwargs)
    assert round(result.macs / 1e9, 3) == gmacs
    assert result.macs == exact
    assert result.flops == 2 * exact


@pytest.mark.parametrize(("name", "params"), [
    ("resnet50", 25_557_032), ("googlenet", 6_998_552), ("googlenet_tv", 6_624_904),
    ("resnet20", 269_722), ("resnet1202", 19_421_274),
])
def test_params_without_aux(name, params):
    assert complexity(name).params == params


def test_aux_heads_counted_in_training_mode():
    plain, aux = complexity("googlenet_tv"), complexity("googlenet_tv", aux=True)
    assert aux.training and not plain.training
    assert aux.params == 13_004_888  # docs/reference.md: torchvision with aux heads
    paper_plain, paper_aux = complexity("googlenet"), complexity("googlenet", aux=True)
    # Sec. 5 heads on a 4x4 map: 1x1 conv 128, FC 2048->1024, FC 1024->1000.
    head = 128 * 16 * 512 + 2048 * 1024 + 1024 * 1000, 128 * 16 * 528 + 2048 * 1024 + 1024 * 1000
    assert paper_aux.macs - paper_plain.macs == sum(head)
    rows = {r.name: r for r in paper_rows(paper_aux)}
    assert (rows["aux1"].macs, rows["aux2"].macs) == head
    with pytest.raises(ValueError, match="auxiliary"):
        complexity("resnet50", aux=True)


@pytest.mark.parametrize("name", list_models())
def test_hooks_agree_with_flop_counter(name):
    result = complexity(name)
    assert result.flop_counter_flops % 2 == 0
    assert result.macs == result.flop_counter_flops // 2
    assert result.macs == sum(r.macs for r in result.layers) > 0


@pytest.mark.parametrize("name", list_models())
def test_registered_facts_are_the_counts(name):
    """The registry's stored params and MACs (what `cnnarch models` prints) are counted here."""
    result, entry = complexity(name), MODELS[name]
    assert (result.params, result.macs) == (entry.params, entry.macs)
    assert result.input_size == entry.input_size


def test_flop_counter_catches_what_hooks_miss():
    class FunctionalConv(nn.Module):  # a conv the hooks cannot see (no nn.Conv2d)
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(8, 3, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.weight, padding=1)

    result = model_complexity(nn.Sequential(FunctionalConv(), nn.Conv2d(8, 4, 1)), (3, 10, 10))
    assert result.macs == 4 * 8 * 100
    assert result.flop_counter_flops // 2 == result.macs + 8 * 27 * 100


def test_model_complexity_leaves_the_model_alone():
    model = create_model("resnet20")
    model.train()
    result = model_complexity(model, (3, 32, 32))
    assert result.model == "resnet20" and result.macs == complexity("resnet20").macs
    assert model.training and next(model.parameters()).device.type == "cpu"


def test_layer_rows_and_shapes():
    result = complexity("resnet18")
    first = result.layers[0]
    assert (first.name, first.type, first.output_shape, first.params, first.macs) == \
        ("conv1", "Conv2d", (64, 112, 112), 64 * 3 * 49, 64 * 3 * 49 * 112 * 112)
    assert result.layers[-1].name == "fc" and result.output_shape == (1000,)
    assert sum(r.params for r in result.layers) == result.params  # every parameter has a row
    assert all(r.macs == 0 for r in result.layers if r.type not in ("Conv2d", "Linear"))
    d = result.to_dict()
    assert d["flops"] == 2 * d["macs"] and d["layers"][0]["output_shape"] == [64, 112, 112]


def test_bad_input_sizes():
    with pytest.raises(ValueError, match="3 input channels"):
        complexity("resnet50", (1, 224, 224))
    with pytest.raises(ValueError, match="at least"):
        complexity("googlenet", (3, 32, 32))
    with pytest.raises(ValueError, match="three positive"):
        complexity("resnet50", (3, 224))
    with pytest.raises(ValueError, match="unknown model"):
        complexity("resnet51")
    # a shape error deep inside torch becomes a one-line UserError naming model and size
    with pytest.raises(UserError, match=r"tiny cannot run on a 1x2x2 input"):
        model_complexity(nn.Conv2d(1, 1, 5), (1, 2, 2), name="tiny")


# --- Table 1 rows ------------------------------------------------------------------------------


def _inception_formula(cin, row, hw, per_channel, k5=5):
    """Closed form for one bottleneck Inception module: (params, MACs). ``per_channel``: extra
    parameters per output channel of each conv (1: a bias, 2: BN gamma and beta)."""
    weights = (cin * row.n1x1 + cin * row.n3x3red + row.n3x3red * 9 * row.n3x3
               + cin * row.n5x5red + row.n5x5red * k5 * k5 * row.n5x5 + cin * row.pool_proj)
    biases = row.n1x1 + row.n3x3red + row.n3x3 + row.n5x5red + row.n5x5 + row.pool_proj
    return weights + per_channel * biases, weights * hw * hw


@pytest.mark.parametrize(("name", "sizes", "per_channel"), [
    ("googlenet", {"3": 28, "4": 14, "5": 7}, 1),  # the paper: conv biases, LRN
    ("googlenet_small", {"3": 32, "4": 16, "5": 8}, 2),  # BN by default, no biases
])
def test_googlenet_rows_match_formula(name, sizes, per_channel):
    rows = {r.name: r for r in paper_rows(complexity(name))}
    cin = 192
    for key, row in TABLE1.items():
        params, macs = _inception_formula(cin, row, sizes[key[0]], per_channel)
        cout = row.n1x1 + row.n3x3 + row.n5x5 + row.pool_proj
        assert (rows[key].params, rows[key].macs) == (params, macs), key
        assert rows[key].output_shape == (cout, sizes[key[0]], sizes[key[0]])
        cin = cout
    if name == "googlenet":
        assert rows["conv1"].macs == 112 * 112 * 64 * 7 * 7 * 3  # 118M; the paper prints 34M
        assert rows["conv2"].macs == 56 * 56 * (64 * 64 + 192 * 9 * 64)  # paper: 360M
        assert rows["fc"].macs == 1024 * 1000
        assert sum(r.macs for r in rows.values()) == complexity(name).macs


def test_resnet_rows():
    rows = paper_rows(complexity("resnet50", stride_at="1x1"))
    assert [r.name for r in rows] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    assert [r.output_shape[1:] for r in rows[:5]] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert sum(r.macs for r in rows) == 3_857_973_248
    assert sum(r.params for r in rows) == 25_557_032


def test_compare_googlenet_paper():
    cmp = {c.name: c for c in compare_googlenet_paper(complexity("googlenet"))}
    assert set(cmp) == set(GOOGLENET_PAPER_TABLE1)
    for key, row in TABLE1.items():
        assert cmp[key].columns == row._asdict() == cmp[key].paper_columns
        assert cmp[key].output == GOOGLENET_PAPER_TABLE1[key].output
    assert cmp["conv1"].macs_diff == 118_013_952 - 34_000_000  # shown, not trusted
    naive = {c.name: c for c in compare_googlenet_paper(complexity("googlenet", inception="naive"))}
    assert naive["3a"].columns["n3x3red"] is None and naive["3a"].columns["n3x3"] == 128
    assert naive["3a"].output == (28, 28, 192 + 64 + 128 + 32)


def test_compare_resnet_paper():
    c = compare_resnet_paper("resnet50")
    assert (c.paper_gflops, c.macs, c.v1_macs, c.v15_macs) == (3.8, 4_089_184_256, 3_857_973_248,
                                                                4_089_184_256)
    assert compare_resnet_paper("resnet50", stride_at="1x1").macs == 3_857_973_248
    assert compare_resnet_paper("resnet18").v1_macs is None
    cifar = compare_resnet_paper("resnet110")
    assert cifar.paper_gflops is None and cifar.paper_params_m == 1.7 and cifar.params == 1_727_962


# --- the lecture's example -----------------------------------------------------------------------


def test_inception_cost_example():
    ex = inception_cost_example()
    hw = 28 * 28
    naive_terms = [128 * 256, 192 * 9 * 256, 96 * 25 * 256]
    bottleneck_terms = [128 * 256, 64 * 256, 192 * 9 * 64, 64 * 256, 96 * 25 * 64, 64 * 256]
    assert [t.macs for t in ex.naive.terms] == [hw * t for t in naive_terms]
    assert [t.macs for t in ex.bottleneck.terms] == [hw * t for t in bottleneck_terms]
    assert all(t.macs == t.formula_macs for t in ex.naive.terms + ex.bottleneck.terms)
    assert ex.naive.macs == hw * sum(naive_terms) == 854_196_224
    assert (ex.naive.macs, ex.naive.output_depth) == (LECTURE_NAIVE_MACS, LECTURE_NAIVE_DEPTH)
    assert (ex.bottleneck.macs, ex.bottleneck.output_depth) == (LECTURE_BOTTLENECK_MACS,
                                                               LECTURE_BOTTLENECK_DEPTH)
    assert ex.bottleneck.macs == hw * sum(bottleneck_terms) == 271_351_808
    assert (ex.naive.output_depth, ex.bottleneck.output_depth) == (672, 480)
    assert ex.naive.output_shape == (672, 28, 28) and ex.bottleneck.output_shape == (480, 28, 28)
    assert sum(d for _, d in ex.naive.depth_terms) == 672
    # the slide's 358M: our sum plus the 3x3 term a second time
    assert ex.slide.explained and ex.slide.double_counted == "3x3 conv, 192"
    assert ex.slide.sum_with_double == 271_351_808 + 86_704_128 == 358_055_936
    assert "358M" in ex.slide.sentence() and "271,351,808" in ex.slide.sentence()
    d = ex.to_dict()
    assert d["naive"]["macs"] == 854_196_224 and d["bottleneck"]["output_depth"] == 480


@pytest.mark.parametrize(("name", "size"), [("googlenet", 224), ("googlenet_small", 32)])
def test_naive_depth_grows(name, size):
    cmp = naive_vs_bottleneck(name)
    assert cmp.input_size == (3, size, size)
    depths = [m.naive.out_depth for m in cmp.modules]
    assert depths == sorted(depths) and len(set(depths)) == len(depths)  # strictly growing
    for m, (key, row) in zip(cmp.modules, TABLE1.items(), strict=True):
        assert m.key == key
        assert m.naive.out_depth == m.naive.in_depth + row.n1x1 + row.n3x3 + row.n5x5
        assert m.bottleneck.out_depth == row.n1x1 + row.n3x3 + row.n5x5 + row.pool_proj
        assert m.naive.macs > m.bottleneck.macs
    assert cmp.total_macs["naive"] > 5 * cmp.total_macs["bottleneck"]
    with pytest.raises(ValueError, match="no Inception"):
        naive_vs_bottleneck("resnet50")
