"""cnnarch.inference.quantize: post-training int8 on the CPU (PT2E + X86InductorQuantizer + inductor).

The accuracy test trains a real model on the bundled digits (a few seconds) and asserts the
int8 copy agrees with fp32 on the test split; random weights only show the graph is sound.
"""

import pytest
import torch

from cnnarch import create_model
from cnnarch.errors import UserError
from cnnarch.inference import optimize, precision_agreement, resolve_precision
from cnnarch.inference.bench import bench, noise_bn_statistics
from cnnarch.inference.quantize import RTOL_INT8, _split_shared_relus, int8_available, quantize_int8

needs_int8 = pytest.mark.skipif(int8_available() is not None, reason=str(int8_available()))


def _random_model(name, size, **kwargs):
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    noise_bn_statistics(model, torch.randn(16, 3, size, size))
    return model.eval()


def test_shared_relu_calls_get_their_own_module_path():
    # A BasicBlock calls its one self.relu twice; the quantizer needs one group per call.
    model = create_model("resnet20").eval()
    graph = torch.export.export(model, (torch.randn(2, 3, 32, 32),)).module().graph
    relus = [n for n in graph.nodes if n.op == "call_function" and "relu" in str(n.target)]
    paths = lambda: [list(n.meta["nn_module_stack"].values())[-1][0] for n in relus]  # noqa: E731
    assert len(set(paths())) < len(relus)  # shared before
    assert _split_shared_relus(graph) == len(relus) == 1 + 2 * 9  # stem + two per block
    assert len(set(paths())) == len(relus)


@needs_int8
@pytest.mark.parametrize("name,size", [("resnet20", 32), ("plain20", 32)])
def test_int8_within_tolerance_and_original_untouched(name, size):
    model = _random_model(name, size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, size, size)
    q = optimize(model, x, precision="int8", calibration=torch.randn(32, 3, size, size))
    assert q.precision == "int8" and q.compiled and q.calibration_images == 32
    assert q.folded == 19  # 19 convolutions, each with its BN (option A: no shortcut convs)
    assert q.check.passed and q.check.rtol == RTOL_INT8
    out = q(x)
    assert out.dtype == torch.float32 and out.shape == (4, 10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@needs_int8
def test_int8_batch_of_one_with_larger_calibration_batches():
    model = _random_model("resnet20", 32)
    q = optimize(model, torch.randn(1, 3, 32, 32), precision="int8",
                 calibration=[torch.randn(5, 3, 32, 32), torch.randn(64, 3, 32, 32)])
    assert q.calibration_images == 69 and q.check.passed
    assert q(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@needs_int8
@pytest.mark.slow
@pytest.mark.parametrize("name,size,kwargs", [("resnet18", 64, {}),
                                              ("googlenet_small", 32, {"aux_logits": False})])
def test_int8_other_families(name, size, kwargs):
    model = _random_model(name, size, **kwargs)
    q = quantize_int8(model, torch.randn(32, 3, size, size), torch.randn(4, 3, size, size))
    assert q.check.passed


@needs_int8
def test_int8_accuracy_on_trained_digits():
    """Trained near convergence (8 epochs: fp32 top-1 0.93-0.98 measured with 1 and 2 threads
    and with AVX2 kernels, where 4 epochs gave 0.886-0.94 across CPUs), so the bounds test int8,
    not how far one CPU's rounding lets a short run get. The fp32 bound only says "learned"
    (chance is 0.1); agreement measured 0.994-1.0, accuracy change at most 0.006."""
    from cnnarch.data import load_dataset
    from cnnarch.train import TrainConfig, train

    model = train(TrainConfig(model="resnet20", data="digits", epochs=8, quiet=True,
                              precision="fp32", channels_last="off")).model
    data = load_dataset("digits")
    calib = data.normalize(data.train_images[:256])
    test = (data.normalize(data.test_images), data.test_labels)
    res = precision_agreement(model, test, precision="int8", calibration=calib,
                              batch_size=len(data.test_labels))
    assert res["precision"] == "int8" and res["n"] == len(data.test_labels)
    assert res["fp32_top1"] > 0.8  # the model learned something
    assert res["top1_agreement"] >= 0.95
    assert abs(res["top1_change"]) <= 0.03


def test_int8_is_cpu_only_and_inference_only():
    with pytest.raises(UserError, match="CPU"):
        resolve_precision("int8", "cuda")
    assert resolve_precision("auto", "cpu") != "int8"  # never chosen for the user
    with pytest.raises(UserError, match="inference"):
        bench("resnet20", "train", batch=2, precision="int8", repeats=1)


def test_int8_without_torchao_is_a_clear_error(monkeypatch):
    import cnnarch.inference.quantize as quantize

    monkeypatch.setattr(quantize, "int8_available", lambda: "int8 needs torchao (test)")
    with pytest.raises(UserError, match="torchao"):
        quantize_int8(create_model("resnet20"), None, torch.randn(2, 3, 32, 32))


@needs_int8
def test_int8_check_raises_on_mismatch():
    from cnnarch.inference import ToleranceError

    with pytest.raises(ToleranceError, match=r"\(int8\) disagrees"):
        optimize(_random_model("resnet20", 32), torch.randn(2, 3, 32, 32), precision="int8", rtol=-1.0)
