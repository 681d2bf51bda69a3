"""G1-G4: what an Inception module is and what it costs (counted on our modules, not typed in).

- G1: params and multiply-adds of GoogLeNet next to the ResNets and the naive variant.
- G2: the module's four parallel branches and their depth-wise concatenation, shape-checked.
- G3: the lecture's naive module (28x28x256 input): 854,196,224 MACs, output depth 672;
  depth growth when naive modules are stacked (the whole network, ``inception="naive"``).
- G4: the bottleneck module: 271,351,808 MACs, depth 480; the slide's 358M explained;
  measured forward time of both networks on this machine.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..analysis.complexity import (
    LECTURE_BOTTLENECK_DEPTH,
    LECTURE_BOTTLENECK_MACS,
    LECTURE_NAIVE_DEPTH,
    LECTURE_NAIVE_MACS,
    LECTURE_SLIDE_MACS,
    complexity,
    inception_cost_example,
    naive_vs_bottleneck,
)
from .claims import Claim, Experiment, Part, Rule, register, register_experiment, verdict_if

# The counts below must equal the sums of the lecture's own terms for its 28x28x256 example
# exactly (LECTURE_*, analysis/complexity.py; docs/reference.md).
LECTURE_SLIDE_BOTTLENECK = LECTURE_SLIDE_MACS["bottleneck"]
MIN_SAVING = 2.0  # "cutting the cost sharply": at least 2x fewer MACs

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
RESNET_LAYERS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}


def verdict_g1(m: dict):
    macs = [m["resnet_macs"][n] for n in RESNETS]
    grows = all(a < b for a, b in zip(macs, macs[1:], strict=False))
    g, r18 = m["googlenet"], m["resnet_macs"]["resnet18"]
    efficient = g["macs"] < r18 and g["params"] < m["resnet_params"]["resnet18"]
    saving = m["googlenet_naive"]["macs"] / g["macs"]
    ok = grows and efficient and saving >= MIN_SAVING
    rule = (f"deeper ResNets cost more (MACs 18->152: {' < '.join(f'{x / 1e9:.2f}G' for x in macs)}: "
            f"{'yes' if grows else 'no'}); GoogLeNet (22 layers) {g['macs'] / 1e9:.3f} GMACs, "
            f"{g['params'] / 1e6:.2f}M params vs ResNet-18 {r18 / 1e9:.3f} GMACs, "
            f"{m['resnet_params']['resnet18'] / 1e6:.2f}M ({'cheaper' if efficient else 'not cheaper'}); "
            f"its naive variant costs {saving:.1f}x more (needs >= {MIN_SAVING:g}x) "
            f"-> {'all hold' if ok else 'not all hold'}")
    return verdict_if(ok, rule)


def verdict_g2(m: dict):
    ok = (m["output_shape"] == m["expected_shape"] and m["concat_matches_branches"]
          and sorted(m["branch_kernels"]) == [1, 3, 5] and m["has_pool_branch"])
    rule = (f"Inception 3a on a {m['input_shape']} input: output {m['output_shape']} "
            f"(expected {m['expected_shape']}: same spatial size, depth "
            f"{' + '.join(map(str, m['branch_depths']))}); output channels = the four branches "
            f"concatenated in order: {m['concat_matches_branches']}; kernels {m['branch_kernels']} "
            f"+ max-pool branch: {m['has_pool_branch']}")
    return verdict_if(ok, rule)


def verdict_g3(m: dict):
    grows = all(b > a for a, b in m["naive_depth_chain"])
    ok = (m["naive_macs"] == LECTURE_NAIVE_MACS and m["naive_depth"] == LECTURE_NAIVE_DEPTH
          and m["naive_keeps_size"] and grows)
    rule = (f"naive module counted {m['naive_macs']:,} MACs (lecture {LECTURE_NAIVE_MACS:,}), "
            f"output depth {m['naive_depth']} (lecture {LECTURE_NAIVE_DEPTH}), spatial size kept: "
            f"{m['naive_keeps_size']}; stacked naive modules: depth "
            f"{' -> '.join(str(a) for a, _ in m['naive_depth_chain'])} -> {m['naive_depth_chain'][-1][1]} "
            f"(grows at every module: {grows})")
    return verdict_if(ok, rule)


def verdict_g4(m: dict):
    ok = (m["bottleneck_macs"] == LECTURE_BOTTLENECK_MACS
          and m["bottleneck_depth"] == LECTURE_BOTTLENECK_DEPTH
          and m["slide_explained"] and m["module_saving"] >= MIN_SAVING
          and m["network_saving"] >= MIN_SAVING)
    rule = (f"bottleneck module counted {m['bottleneck_macs']:,} MACs (the lecture's terms sum to "
            f"{LECTURE_BOTTLENECK_MACS:,}), depth {m['bottleneck_depth']} (lecture "
            f"{LECTURE_BOTTLENECK_DEPTH}); the slide's {LECTURE_SLIDE_BOTTLENECK / 1e6:.0f}M = our sum + "
            f"the '{m['slide_double_counted']}' term again: {m['slide_explained']}; saving "
            f"{m['module_saving']:.2f}x per module and {m['network_saving']:.2f}x on the whole "
            f"{m['network_model']} (needs >= {MIN_SAVING:g}x)")
    return verdict_if(ok, rule)


def _shape_check() -> dict:
    from ..models import TABLE1, Inception

    torch.manual_seed(0)
    module = Inception(192, TABLE1["3a"]).eval()
    x = torch.randn(2, 192, 28, 28)
    with torch.no_grad():
        y = module(x)
        parts = [module.branch1(x), module.branch2(x), module.branch3(x), module.branch4(x)]
    concat = bool(torch.equal(torch.cat(parts, 1), y))
    kernels = [module.branch1.conv.kernel_size[0], module.branch2[1].conv.kernel_size[0],
               module.branch3[1].conv.kernel_size[0]]
    depths = [p.shape[1] for p in parts]
    return {"input_shape": [192, 28, 28], "output_shape": list(y.shape[1:]),
            "expected_shape": [sum(depths), 28, 28], "branch_depths": depths,
            "concat_matches_branches": concat, "branch_kernels": kernels,
            "has_pool_branch": isinstance(module.branch4[0], torch.nn.MaxPool2d)}


def _forward_time(model_name: str, in_chans: int, size: int, batch: int, repeats: int, **kw) -> dict:
    from ..models import create_model

    model = create_model(model_name, in_chans=in_chans, aux_logits=False, **kw).eval()
    x = torch.randn(batch, in_chans, size, size)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "batch": batch,
            "img_per_s": batch / med, "repeats": repeats}


def run(ctx) -> dict:
    """Count the lecture example, both GoogLeNet variants and the ResNets; time both
    GoogLeNet variants on the data set's image size."""
    sc, progress = ctx.scale, ctx.progress
    progress.start("inception-cost (G1-G4)")
    ex = inception_cost_example()
    ds = ctx.dataset()
    c, (h, w) = ds.in_chans, ds.image_size
    progress.say("counting GoogLeNet naive vs bottleneck (224x224) and the ResNets")
    net = naive_vs_bottleneck("googlenet")
    g = complexity("googlenet")
    gn = complexity("googlenet", inception="naive")
    resnet_macs = {n: complexity(n).macs for n in RESNETS}
    resnet_params = {n: complexity(n).params for n in RESNETS}
    cifar = {n: {"params": complexity(n).params, "macs": complexity(n).macs}
             for n in ("resnet20", "resnet56", "resnet110")}

    progress.say(f"timing googlenet_small forward, bottleneck vs naive, on {c}x{h}x{w}")
    timing = {mode: _forward_time("googlenet_small", c, h, 16, sc.timing_repeats, inception=mode)
              for mode in ("bottleneck", "naive")}
    timing_macs = {mode: complexity("googlenet_small", (c, h, w), in_chans=c, inception=mode).macs
                   for mode in ("bottleneck", "naive")}

    chain = [(r.naive.in_depth, r.naive.out_depth) for r in net.modules]
    g1 = {"googlenet": {"params": g.params, "macs": g.macs},
          "googlenet_naive": {"params": gn.params, "macs": gn.macs},
          "resnet_macs": resnet_macs, "resnet_params": resnet_params,
          "resnet_layers": RESNET_LAYERS, "cifar_resnets": cifar}
    g3 = {"naive_macs": ex.naive.macs, "naive_depth": ex.naive.output_depth,
          "naive_keeps_size": list(ex.naive.output_shape[1:]) == [28, 28],
          "naive_terms": {t.label: t.macs for t in ex.naive.terms},
          "naive_depth_chain": chain}
    g4 = {"bottleneck_macs": ex.bottleneck.macs, "bottleneck_depth": ex.bottleneck.output_depth,
          "bottleneck_terms": {f"{t.label} ({t.role})": t.macs for t in ex.bottleneck.terms},
          "slide_printed": ex.slide.printed, "slide_explained": ex.slide.explained,
          "slide_double_counted": ex.slide.double_counted,
          "slide_sum_with_double": ex.slide.sum_with_double,
          "slide_explanation": ex.slide.sentence(),
          "module_saving": ex.naive.macs / ex.bottleneck.macs,
          "network_model": "googlenet (224x224)",
          "network_macs": dict(net.total_macs), "network_params": dict(net.total_params),
          "network_saving": net.total_macs["naive"] / net.total_macs["bottleneck"],
          "forward_time": {"model": f"googlenet_small on {c}x{h}x{w}, batch 16, this machine",
                           **{m: timing[m] for m in timing}},
          "forward_speedup": timing["naive"]["median_s"] / timing["bottleneck"]["median_s"],
          "forward_macs": timing_macs}
    per_module = [{"module": r.key, "bottleneck_in": r.bottleneck.in_depth,
                   "bottleneck_out": r.bottleneck.out_depth, "bottleneck_macs": r.bottleneck.macs,
                   "bottleneck_params": r.bottleneck.params, "naive_in": r.naive.in_depth,
                   "naive_out": r.naive.out_depth, "naive_macs": r.naive.macs,
                   "naive_params": r.naive.params} for r in net.modules]
    return {"measurements": {"G1": g1, "G2": _shape_check(), "G3": g3, "G4": g4},
            "data": {"per_module": per_module, "example": ex.to_dict()}}


def _draw(fn):
    def draw(measured, data, path):
        from ..report import figures

        d = data["inception-cost"]
        return getattr(figures, fn)(measured, d, path)
    return draw


register(Claim(
    "G1", "Deeper networks cost more compute; GoogLeNet goes deep and efficient through the "
          "Inception module.", "inception-cost",
    (Part("cost", Rule(1, "multiply-adds grow from ResNet-18 to ResNet-152; GoogLeNet (22 layers) "
                          "costs fewer MACs and parameters than ResNet-18; its naive variant "
                          f"costs at least {MIN_SAVING:g}x more", verdict_g1)),),
    figure="g1_cost.png",
    caption="Multiply-adds and parameters at 224x224. Look for the green GoogLeNet bar below "
            "every ResNet, and the grey naive variant far above it.", draw=_draw("cost_bars")))

register(Claim(
    "G2", "An Inception module runs 1x1, 3x3, 5x5 convolutions and a 3x3 max-pool in parallel on "
          "the same input and concatenates them along depth.", "inception-cost",
    (Part("structure", Rule(1, "Inception 3a keeps the spatial size; its output is the four "
                               "branches (1x1, 3x3, 5x5 convolutions, max-pool) concatenated in "
                               "order along depth", verdict_g2)),),
    figure="g2_branches.png",
    caption="Output depth of each branch of every Inception module. Look for four branches in "
            "every module and their stacked sum equal to the module's output depth.",
    controls=("random-labels",),  # of the trained part the aux-heads experiment adds
    draw=_draw("inception_branches")))

register(Claim(
    "G3", "The naive module keeps the spatial size but its depth only grows (the pool keeps the "
          "full input depth); 854M multiply-adds, depth 672 in the lecture's example.",
    "inception-cost",
    (Part("counting", Rule(1, "the naive module on 28x28x256 counts exactly 854,196,224 MACs and "
                              "depth 672; stacked naive modules grow in depth at every module",
                           verdict_g3)),),
    figure="g3_naive.png",
    caption="The lecture's example term by term, and the output depth of stacked naive modules. "
            "Look for the depth rising at every module (the pool branch passes its whole input).",
    draw=_draw("naive_module")))

register(Claim(
    "G4", "1x1 bottleneck reductions cut the cost sharply: depth 480, and the slide's 358M is "
          "really 271,351,808 (the 3x3 term counted twice).", "inception-cost",
    (Part("counting", Rule(1, "the bottleneck module counts exactly 271,351,808 MACs and depth "
                              "480; the slide's 358M is that sum plus the 3x3 term again; the "
                              f"saving is at least {MIN_SAVING:g}x per module and on the network",
                           verdict_g4)),),
    figure="g4_bottleneck.png",
    caption="Multiply-adds of the naive and the bottleneck module (the lecture's example and "
            "every GoogLeNet module, log scale). Look for the green bars several times lower. Where "
            "the scale trains them (right panel): test accuracy of googlenet_small with bottleneck, "
            "linear (1x1 without ReLU) and, at full scale, naive modules at equal steps against their "
            "multiply-adds, one dot per seed; look for the green dots level with or above the grey "
            "ones, 10x to their left, and whether the green and blue ranges separate. Hollow dots: bottleneck "
            "and linear once more at G5's longer run length (standard scale), where the 44-step "
            "race's head start may have closed.",
    controls=("random-labels",),  # of the trained parts inception_trained adds
    draw=_draw("bottleneck_modules")))

register_experiment(Experiment("inception-cost", run, ("G1", "G2", "G3", "G4"), order=10,
                               summary="G1-G4: params and multiply-adds counted on our modules"))
