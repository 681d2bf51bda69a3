"""The compile-friendly batch norm is nn.BatchNorm2d, spelled differently (cnnarch/train/batchnorm.py)."""

import copy

import pytest
import torch
from torch import nn

from cnnarch.models import create_model
from cnnarch.train import TrainConfig, train
from cnnarch.train.batchnorm import TwoPassBatchNorm2d, batchnorm_for_compile, two_pass_batchnorm


def _pair(channels=6, **kw):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(channels, **kw)
    if ref.affine:
        nn.init.normal_(ref.weight)
        nn.init.normal_(ref.bias)
    ours = copy.deepcopy(ref)
    ours.__class__ = TwoPassBatchNorm2d
    return ref, ours


def _run(bn, x, grad):
    x = x.clone().requires_grad_()
    y = bn(x)
    y.backward(grad)
    params = [p.grad for p in bn.parameters()]
    return y, x.grad, params


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_forward_backward_and_running_stats_match_the_builtin(channels_last):
    ref, ours = _pair()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for _ in range(3):  # three steps: the running statistics compound
        x = (torch.randn(8, 6, 5, 7) * 3 + 2).contiguous(memory_format=fmt)
        grad = torch.randn(8, 6, 5, 7)
        ref.zero_grad()
        ours.zero_grad()
        y_ref, dx_ref, dp_ref = _run(ref, x, grad)
        y, dx, dp = _run(ours, x, grad)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dx, dx_ref, rtol=1e-4, atol=1e-5)
        for a, b in zip(dp, dp_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-5, atol=1e-6)
    ref.eval()
    ours.eval()
    x = torch.randn(4, 6, 3, 3)
    torch.testing.assert_close(ours(x), ref(x))


def test_bf16_autocast_keeps_the_builtins_dtype_and_values():
    ref, ours = _pair()
    x = torch.randn(16, 6, 8, 8).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ref, y = ref(x), ours(x)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kw", [{"momentum": None}, {"affine": False}, {"track_running_stats": False}])
def test_configurations_it_does_not_rewrite_defer_to_the_builtin(kw):
    ref, ours = _pair(**kw)
    for _ in range(2):
        x = torch.randn(8, 6, 4, 4)
        torch.testing.assert_close(ours(x), ref(x))
    if ref.track_running_stats:
        torch.testing.assert_close(ours.running_var, ref.running_var)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ours(torch.randn(1, 6, 1, 1))


def test_swap_keeps_parameters_and_state_dict_and_turns_back():
    model = create_model("resnet20", num_classes=10)
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    restore = two_pass_batchnorm(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(type(m) is TwoPassBatchNorm2d for m in bns)
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    restore()
    assert all(type(m) is nn.BatchNorm2d for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_compiled_training_matches_eager_and_returns_builtin_batchnorm():
    """`cnnarch train --compile` on a CPU runs the rewrite under torch.compile; the result is
    the eager run's within float tolerance, and the returned model has nn.BatchNorm2d again.

    One optimizer step: the weights then differ by lr x the gradients' rounding, the running
    statistics by the batch statistics'. Measured differences: at most 2.1e-7 (weights) and
    1.2e-8 (running statistics), with 1 and 2 threads and with the CPU features narrowed to
    AVX2 (make test-portable); the tolerances leave a margin of about 50x. More steps are not
    comparable: early training on digits amplifies rounding (after 4 steps conv1's weights
    differ by 3.8e-3 under AVX2 though every step is right)."""
    common = dict(model="resnet20", data="digits", val_split=False, iterations=1, batch_size=64,
                  eval_every=100, quiet=True, device="cpu", precision="fp32", channels_last="off",
                  warmup_epochs=0.0)
    eager = train(TrainConfig(**common)).model
    seen = []
    compiled = train(TrainConfig(**common, compile=True),
                     on_epoch_end=lambda m, _: seen.extend(type(b) for b in m.modules()
                                                           if isinstance(b, nn.BatchNorm2d))).model
    assert seen and set(seen) == {TwoPassBatchNorm2d}  # what the compiled step ran
    assert all(type(m) is nn.BatchNorm2d for m in compiled.modules() if isinstance(m, nn.BatchNorm2d))
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 if "running" not in name else 1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_batchnorm_for_compile_swaps_on_cpu_only():
    model = create_model("resnet20", num_classes=10)
    restore = batchnorm_for_compile(model, torch.device("meta"))  # not a CPU: left alone
    assert all(type(m) is nn.BatchNorm2d for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    restore()
    restore = batchnorm_for_compile(model, torch.device("cpu"))
    assert any(type(m) is TwoPassBatchNorm2d for m in model.modules())
    restore()
    assert not any(type(m) is TwoPassBatchNorm2d for m in model.modules())
