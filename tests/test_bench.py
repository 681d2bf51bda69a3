"""cnnarch.inference.bench: the measuring machinery. Never asserts a speed, only that the numbers are
well-formed and the FLOP count matches the reference figures."""

import json
from pathlib import Path

import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.hardware import machine_info
from cnnarch.inference import bench as bench_mod
from cnnarch.inference.bench import (
    Timing,
    bench,
    classification_loss,
    count_flops,
    make_train_step,
    matmul_peak_gflops,
    noise_bn_statistics,
    percentiles,
)
from cnnarch.models import create_model


def test_percentiles_nearest_rank():
    samples = [float(i) for i in range(1, 101)]
    assert percentiles(samples) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0}


def test_timing_median_and_spread():
    t = Timing([0.3, 0.1, 0.2])
    assert t.median == 0.2 and t.spread == (0.1, 0.3)


def test_flops_match_the_reference_macs():
    # docs/reference.md: ResNet-18 1.814 GMACs at 224x224; FLOPs = 2 x MACs (conv + linear only).
    flops = count_flops(create_model("resnet18"), torch.randn(1, 3, 224, 224))
    assert abs(flops / 2e9 - 1.814) < 0.001


def test_training_flops_are_about_three_forwards():
    model = create_model("resnet20")
    x = torch.randn(2, 3, 32, 32)
    fwd, step = count_flops(model, x), count_flops(model, x, train=True)
    assert 2.5 * fwd < step < 3.5 * fwd
    assert all(p.grad is None for p in model.parameters())


def test_matmul_peak_is_measured():
    res = matmul_peak_gflops("fp32", "cpu", sizes=(64, 128))
    assert res["gflops"] > 0 and set(res["per_size"]) == {64, 128}


def test_noise_bn_statistics_sets_statistics_and_keeps_mode():
    model = create_model("resnet20").eval()
    noise_bn_statistics(model, torch.randn(4, 3, 32, 32))
    assert not model.training
    assert not torch.allclose(model.bn1.running_var, torch.ones_like(model.bn1.running_var))
    assert model.bn1.momentum == 0.1


def test_classification_loss_weighs_aux_heads():
    target = torch.tensor([0, 1])
    logits = torch.randn(2, 3)
    main = classification_loss(logits, target)
    both = classification_loss((logits, logits, logits), target)
    torch.testing.assert_close(both, main * 1.6)


def test_train_step_updates_the_weights():
    model = create_model("resnet20")
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    before = model.fc.weight.detach().clone()
    step = make_train_step(model, x, y, precision="bf16", channels_last=True)
    loss = step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.fc.weight)


@pytest.fixture
def fast_peak(monkeypatch):
    """Skip the large matrix products: bench() is tested here for its bookkeeping."""
    monkeypatch.setattr(bench_mod, "matmul_peak_gflops",
                        lambda d, dev: {"dtype": d, "gflops": 100.0, "per_size": {}})


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_bench_reports_well_formed_numbers(fast_peak, mode):
    r = bench("resnet20", mode, batch=2, repeats=2, warmup=1, min_time=0.0,
              latency=mode == "infer", latency_samples=10)
    assert r.img_per_s > 0 and r.img_per_s_spread[0] <= r.img_per_s <= r.img_per_s_spread[1]
    assert r.gflop_per_img > 0 and r.achieved_gflops > 0
    assert r.fraction_of_peak == pytest.approx(r.achieved_gflops / 100.0)
    if mode == "infer":
        lat = r.latency_ms_batch1
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r.output_check.startswith("ok")
    json.dumps(r.to_dict())
    assert "img/s" in str(r)


def test_bench_bad_input(fast_peak):
    with pytest.raises(ValueError, match="unknown model"):
        bench("resnet7")
    with pytest.raises(UserError, match="mode"):
        bench("resnet20", "fly")
    with pytest.raises(UserError, match="at least"):
        bench("googlenet", batch=1, input_size=(3, 32, 32))
    with pytest.raises(UserError, match="for the input alone, more than the"):
        bench("resnet20", batch=999_999_999_999)  # 11 million GiB: refused before allocating


def test_a_batch_that_does_not_fit_is_one_line_exit_2(monkeypatch, capsys):
    """An allocation that fails inside the benchmark (past the input check) is the user's
    --batch: one line, exit 2."""
    import cnnarch.inference.bench as bench_module
    from cnnarch.cli import main

    def no_memory(*_args, **_kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(bench_module, "bench", no_memory)
    assert main(["bench", "resnet20", "--batch", "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit in memory" in err and "--batch" in err
    monkeypatch.setattr(bench_module, "bench", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error is not the user's
        main(["bench", "resnet20"])


def test_machine_info_names_the_libraries():
    info = machine_info()
    assert info["torch"] == torch.__version__ and "cpu" in info and info["torch_threads"] >= 1


def test_cold_compile_cache_uses_a_new_folder_unless_the_user_chose_one(monkeypatch, tmp_path):
    from cnnarch.inference.bench import cold_compile_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    folder = Path(cold_compile_cache())
    assert folder.is_dir() and not any(folder.iterdir()) and folder.name.startswith("cnnarch-inductor-")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    assert cold_compile_cache() == str(tmp_path)
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what inductor itself writes
    assert Path(cold_compile_cache()).name.startswith("cnnarch-inductor-")
