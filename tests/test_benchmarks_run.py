"""benchmarks/run.py's arithmetic: ratios and the share of the interleaved matmul peak."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("cnnarch_benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_share_of_the_interleaved_peak(run):
    batch, flops = 16, 8e9  # per image
    base = run.Contender("baseline", lambda: None, flops, "fp32", samples=[2.0, 2.2, 1.9])
    fast = run.Contender("fast", lambda: None, flops, "bf16", samples=[0.2, 0.25, 0.21])
    ref = run.Contender("bf16 matmul (peak reference)", lambda: None, 0.0, "bf16",
                        samples=[1.0, 1.1, 0.9], reference_flops=1e12)
    rows = {r["contender"]: r for r in run.summarise([base, fast, ref], batch, {"bf16": 5e3, "fp32": 1e3})}
    assert rows["bf16 matmul (peak reference)"]["gflops"] == pytest.approx(1000.0)
    fast_gflops = flops * batch / 0.21 / 1e9
    assert rows["fast"]["gflops"] == pytest.approx(fast_gflops)
    ref_gflops = 1000.0  # the reference's median call: 1e12 FLOPs in 1.0 s
    assert rows["fast"]["fraction_of_interleaved_peak"] == pytest.approx(fast_gflops / ref_gflops)
    assert rows["fast"]["fraction_of_bf16_peak"] == pytest.approx(fast_gflops / 5e3)  # start peak
    assert rows["fast"]["speedup_vs_baseline"] == pytest.approx(2.0 / 0.21)
    table = run.markdown([{"model": "m", "input": "3x8x8", "batch": batch, "mode": "infer",
                           "rows": list(rows.values())}], torch.device("cpu"))
    frac = 100 * fast_gflops / ref_gflops
    assert f"| {fast_gflops:.0f} | {frac:.0f} |" in table  # "% peak" is the interleaved one


def test_peak_reference_times_the_best_size(run):
    peak = {"gflops": 10.0, "per_size": {"64": 5.0, "128": 10.0, "32": 1.0}}
    ref = run.peak_reference("fp32", torch.device("cpu"), peak)
    assert ref.reference_flops == 2.0 * 128**3
    assert ref.fn().shape == (128, 128)
