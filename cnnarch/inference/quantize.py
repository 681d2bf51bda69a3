"""Post-training int8 quantisation for x86 CPUs: the lever beyond bf16.

``quantize_int8(model, calibration, example_input)`` returns an
:class:`~cnnarch.inference.fastpath.InferenceModel` whose convolutions and linear layers run
in int8 (AVX-512 VNNI / AMX-INT8 through oneDNN): PyTorch 2 export quantisation (PT2E) with
torchao's ``X86InductorQuantizer`` and ``torch.compile`` (inductor, weight freezing), which
lowers each quantise -> conv -> dequantise pattern to one int8 oneDNN kernel with the ReLU
and residual add fused in.

The recipe (static, post-training):

1. fold every conv + BN pair (exact, :func:`cnnarch.inference.fold.fold_bn`);
2. ``torch.export`` the folded model on the example batch;
3. annotate it: activations uint8 per tensor (affine; scales from a histogram observer),
   weights int8 per output channel (symmetric, min/max);
4. run the calibration batches through the observed graph to fix the activation scales;
5. convert to quantise/dequantise ops and compile with inductor.

Like the bf16 fast path, the result is checked against the fp32 original on the example
batch; outside ``RTOL["int8"]`` (:mod:`cnnarch.inference.check`) it raises. The accuracy
cost on real data is what :func:`cnnarch.inference.precision_agreement` with
``precision="int8"`` measures.

Needs torchao (``pip install "cnnarch[export]"``) and a C++ compiler for inductor; int8 is
CPU-only here (inductor's int8 lowering targets x86).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from ..errors import UserError
from .check import RTOL
from .fastpath import InferenceModel, check_against, eval_copy
from .fold import fold_bn

RTOL_INT8 = RTOL["int8"]  # why this bound: cnnarch.inference.check


def int8_available() -> str | None:
    """None when int8 can run here, else the reason it cannot."""
    pytree_log = logging.getLogger("torch.utils._pytree")  # torchao's import warns there
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer  # noqa: F401
    except ImportError as exc:
        return (f"int8 needs torchao ({exc.name or exc} is missing): "
                f"pip install \"cnnarch[export]\" or pip install torchao")
    finally:
        pytree_log.setLevel(level)
    return None


def _quantizer():
    """X86InductorQuantizer with one fix: it must see each ReLU *call* as its own pattern.

    The quantizer groups nodes by the module that produced them (``nn_module_stack``); a
    ResNet block calls one ``self.relu`` two or three times (as torchvision's does), so the
    calls land in one group with several outputs and the quantizer refuses the graph. We
    give every ReLU node its own module path after the quantizer's own graph transform.
    """
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    class Quantizer(xiq.X86InductorQuantizer):
        def transform_for_annotation(self, model):
            model = super().transform_for_annotation(model)
            _split_shared_relus(model.graph)
            return model

    return Quantizer().set_global(xiq.get_default_x86_inductor_quantization_config())


def _split_shared_relus(graph: torch.fx.Graph) -> int:
    """Rename the innermost module path of every ReLU node to a unique one; returns count."""
    count = 0
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack:
            continue
        key = list(stack)[-1]
        path, cls = stack[key]
        cls_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        if cls_name.endswith(".ReLU"):
            stack = dict(stack)  # the dicts are shared between nodes of one module call
            stack[key] = (f"{path}.{node.name}", cls)
            node.meta["nn_module_stack"] = stack
            count += 1
    return count


def _calibration_batches(calibration, example_input: torch.Tensor) -> Iterable[torch.Tensor]:
    """Tensors from a tensor (split into batches of max(example batch, 64)), pairs, or an iterable."""
    if calibration is None:
        yield example_input
        return
    if isinstance(calibration, torch.Tensor):
        step = max(len(example_input), 64)
        for i in range(0, len(calibration), step):
            yield calibration[i : i + step]
        return
    for item in calibration:
        yield item[0] if isinstance(item, (tuple, list)) else item


def quantize_int8(model: nn.Module, calibration, example_input: torch.Tensor, *,
                  check: bool = True, rtol: float | None = None):
    """An int8 inference copy of ``model`` (the original is untouched), compiled and checked.

    Args:
        model: a cnnarch model (ResNet ImageNet/CIFAR/plain, GoogLeNet variants) in fp32.
        calibration: normalised float images that look like the real inputs (a tensor, an
            iterable of tensors or of (images, labels) pairs); a few hundred images of the
            training split are typical. None: the example batch alone.
        example_input: an fp32 batch on the CPU; the compiled model is specialised to its
            shape (another batch size compiles again).
        check: compare with the fp32 original on ``example_input`` and raise
            :class:`~cnnarch.inference.check.ToleranceError` beyond ``rtol`` (default ``RTOL_INT8``).
    """
    reason = int8_available()
    if reason:
        raise UserError(reason)
    if example_input.device.type != "cpu":
        raise UserError("int8 runs on the CPU here (inductor's x86 int8 lowering); "
                        "on a GPU use bf16 or fp16")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    float_model = eval_copy(model, torch.device("cpu"))
    folded = fold_bn(float_model)
    x = example_input.float()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchao's notes on unquantised max-pools
        # any batch size (calibration batches differ from the example's): N x C x H x W -> N x classes
        # (a batch of 1 would specialise the graph to 1: export on two images then)
        example = x if len(x) > 1 else torch.cat([x, x])
        graph = torch.export.export(float_model, (example,),
                                    dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()
        observed = prepare_pt2e(graph, _quantizer())
        seen = 0
        for batch in _calibration_batches(calibration, x):
            observed(batch.float().cpu())
            seen += len(batch)
        if seen == 0:
            raise UserError("quantize_int8 got no calibration images")
        quantized = convert_pt2e(observed)
    result = InferenceModel(quantized, precision="int8", channels_last=True, folded=folded,
                            device=torch.device("cpu"),
                            compiled_fn=torch.compile(quantized, dynamic=False))
    result.calibration_images = seen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # inductor's tensor-copy note on zero points
        result.compile_on(x)  # quantise/conv/dequantise patterns -> int8 oneDNN kernels
    if check:
        check_against(result, model, x, rtol=RTOL_INT8 if rtol is None else rtol)
    return result
