"""The inference fast path (optimize, BN folding) and the verified ONNX export.

Tolerances are the ones cnnarch.inference.check states; nothing here measures time.
"""

import copy
import os

import pytest
import torch
from torch import nn

from cnnarch.errors import UserError
from cnnarch.inference import (
    RTOL,
    InferenceModel,
    ToleranceError,
    bf16_supported,
    export_onnx,
    fold_bn,
    fold_conv_bn_,
    optimize,
    precision_agreement,
    resolve_precision,
)
from cnnarch.inference.bench import noise_bn_statistics
from cnnarch.models import create_model

PRECISIONS = ["fp32"] + (["bf16"] if bf16_supported("cpu") else [])


def _model(name, size, **kwargs):
    """A registry model with realistic (calibrated) BN statistics, in eval mode."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    noise_bn_statistics(model, torch.randn(8, model.in_chans, size, size))
    return model.eval()


def test_fold_conv_bn_formula_is_exact():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True).double()
    bn = nn.BatchNorm2d(5, eps=1e-3).double()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ref = bn(conv(x))
    fold_conv_bn_(conv, bn)
    torch.testing.assert_close(conv(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,size,kwargs,expected", [
    ("resnet20", 32, {}, 19),  # stem + 2 per block x 9 blocks; option A has no shortcut BN
    ("resnet18", 32, {}, 20),  # stem + 16 + 3 projection shortcuts (option B)
    ("resnet20", 32, {"shortcut": "C"}, 28),  # a projection (+BN) on all 9 shortcuts
    ("googlenet_small", 8, {"aux_logits": False}, 57),  # 3 stem + 9 modules x 6 convs
])
def test_fold_bn_exact_in_fp32(name, size, kwargs, expected):
    model = _model(name, size, **kwargs)
    folded = copy.deepcopy(model)
    assert fold_bn(folded) == expected
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() <= 1e-5 + 1e-5 * ref.abs().max()


def test_fold_bn_needs_eval_mode():
    with pytest.raises(ValueError, match="eval"):
        fold_bn(create_model("resnet20").train())


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name,size,kwargs", [
    ("resnet20", 32, {}),
    ("plain20", 32, {}),
    ("resnet18", 32, {}),
    ("resnet20", 32, {"norm": "none"}),
    ("googlenet_small", 8, {}),
    pytest.param("googlenet_tv", 64, {}, marks=pytest.mark.slow),  # googlenet_small covers it
])
def test_optimize_within_tolerance(name, size, kwargs, precision):
    model = _model(name, size, **kwargs)
    x = torch.randn(2, 3, size, size)
    fast = optimize(model, x, precision=precision)
    assert isinstance(fast, InferenceModel) and fast.precision == precision
    assert fast.check.passed and fast.check.rtol == RTOL[precision]
    out = fast(x)
    assert out.dtype == torch.float32 and out.shape == (2, model.num_classes)
    with torch.no_grad():
        ref = model(x)
    assert (out - ref).abs().max() <= 1e-5 + RTOL[precision] * ref.abs().max()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_optimize_paper_googlenet_with_lrn(precision):
    """The paper's variant: LRN (kept in fp32 under bf16), biased convs, nothing to fold."""
    model = create_model("googlenet").eval()
    size = model.min_input_size
    x = torch.randn(2, 3, size, size)
    fast = optimize(model, x, precision=precision)
    assert fast.folded == 0 and fast.check.passed


def test_optimize_leaves_the_original_alone():
    model = _model("resnet20", 32).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize(model, torch.randn(2, 3, 32, 32), precision="fp32")
    assert model.training
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_optimize_check_raises_on_mismatch():
    model = _model("resnet20", 32)
    with pytest.raises(ToleranceError, match="disagrees"):
        optimize(model, torch.randn(2, 3, 32, 32), precision="fp32", rtol=-1.0)


def test_precision_names():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("auto", "cpu") == ("bf16" if bf16_supported("cpu") else "fp32")
    with pytest.raises(UserError):
        resolve_precision("int4")
    with pytest.raises(UserError, match="CUDA"):
        resolve_precision("fp16", "cpu")


def test_precision_agreement_reports_fractions():
    model = _model("resnet20", 32)
    images = torch.randn(40, 3, 32, 32)
    labels = torch.randint(0, 10, (40,))
    res = precision_agreement(model, (images, labels), precision=PRECISIONS[-1], batch_size=16)
    assert res["n"] == 40
    assert 0.0 <= res["top1_agreement"] <= 1.0
    assert 0.0 <= res["fp32_top1"] <= 1.0 and 0.0 <= res["fast_top1"] <= 1.0
    if PRECISIONS[-1] == "fp32":
        assert res["top1_agreement"] == 1.0


@pytest.mark.slow
def test_optimize_compiled_within_tolerance():
    model = _model("resnet20", 32)
    x = torch.randn(4, 3, 32, 32)
    fast = optimize(model, x, compile=True)
    assert fast.compile_time_s > 0 and fast.check.passed


# --- ONNX -----------------------------------------------------------------------------------


onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("name,size", [("resnet20", 32), pytest.param("googlenet_small", 8, marks=pytest.mark.slow)])
def test_onnx_round_trip_with_dynamic_batch(tmp_path, name, size):
    model = _model(name, size)
    path = tmp_path / f"{name}.onnx"
    report = export_onnx(model, path, (3, size, size))
    assert report.passed and report.opset == 18 and path.is_file()
    assert report.max_abs_diff <= report.atol + report.rtol * report.max_ref
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, size, size)  # a batch size it was not exported with
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


@pytest.mark.parametrize("opset", [11, 17, 99, "18"])
def test_onnx_unsupported_opset_is_a_clear_error(tmp_path, opset):
    path = tmp_path / "m.onnx"
    with pytest.raises(UserError, match="unsupported ONNX opset"):
        export_onnx(create_model("resnet20"), path, (3, 32, 32), opset=opset)
    assert not path.exists()


def test_onnx_mismatch_leaves_no_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")  # an earlier export survives a failed one
    with pytest.raises(ToleranceError):
        export_onnx(_model("resnet20", 32), path, (3, 32, 32), rtol=-1.0)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_onnx_file_carries_the_preprocessing_and_the_normal_mode(tmp_path):
    from cnnarch.data.transform import EvalTransform
    from cnnarch.inference import read_metadata

    transform = EvalTransform((3, 32, 32), (0.1, 0.2, 0.3), (0.5, 0.6, 0.7),
                              tuple(f"class {i}" for i in range(10)), resize=36)
    path = tmp_path / "m.onnx"
    export_onnx(_model("resnet20", 32), path, transform)
    meta = read_metadata(path)
    assert meta["input_size"] == [3, 32, 32] and meta["resize"] == 36
    assert meta["mean"] == [0.1, 0.2, 0.3] and meta["std"] == [0.5, 0.6, 0.7]
    assert meta["classes"] == [f"class {i}" for i in range(10)]
    assert meta["model"] == "resnet20" and "(pixels / 255 - mean) / std" in meta["preprocessing"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # as checkpoints, not mkstemp's 0600
