"""ONNX export, verified in onnxruntime, with the preprocessing in the file's metadata.

``export_onnx(model, path, transform)`` writes an ONNX file with a dynamic batch dimension
through PyTorch's torch.export-based exporter (``dynamo=True``, which needs onnxscript; it
writes opset 18 or newer), runs it in onnxruntime on two batch sizes and compares the
logits with PyTorch's (``rtol=1e-4`` of the largest logit, ``atol=1e-5``). Only a file that
passed is written to ``path``, atomically and with the normal file mode (umask), as
checkpoints are. SIGINT or SIGTERM during the export or its verification stops it at once
with one ``Interrupted`` line (exit 130 / 143) and nothing written (the exporter's scratch
folder is removed); one arriving while the file is being written waits until it is whole.

The graph takes *normalised* images (``images``: N x C x H x W float32) and returns
``logits``; the normalisation is not inside the graph. What a caller must do to pixels is
stored in the model's ``metadata_props`` (all values are strings; lists are JSON):

- ``cnnarch.input_size``: ``[C, H, W]``;
- ``cnnarch.mean``, ``cnnarch.std``: per channel, in [0, 1] pixel units;
- ``cnnarch.resize``: shorter side in px before the centre H x W crop (0: resize straight
  to H x W);
- ``cnnarch.classes``: class names in label order (may be ``[]``);
- ``cnnarch.preprocessing``: the recipe in words, ``x = (pixels / 255 - mean) / std``;
- ``cnnarch.model``: the registry name.

:func:`read_metadata` reads them back.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnarchError, UserError, first_line
from .check import ATOL, ONNX_RTOL, ToleranceError, model_name

ONNX_MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 and newer
ONNX_DEFAULT_OPSET = 18
METADATA_PREFIX = "cnnarch."
PREPROCESSING = ("x = (pixels / 255 - mean) / std per channel, after converting to C channels "
                 "and resizing (resize > 0: shorter side to resize px, then the centre H x W crop; "
                 "resize = 0: straight to H x W); NCHW float32")


@dataclass
class OnnxReport:
    path: str
    opset: int
    exporter: str
    input_size: tuple[int, int, int]
    batch_sizes_checked: tuple[int, ...]
    max_abs_diff: float
    max_ref: float
    rtol: float
    atol: float
    passed: bool
    file_bytes: int
    export_time_s: float

    def __str__(self) -> str:
        c, h, w = self.input_size
        verdict = "verified" if self.passed else "MISMATCH"
        return (f"{verdict}: {self.path} (opset {self.opset}, {self.exporter}, input "
                f"batch x {c} x {h} x {w}, dynamic batch); onnxruntime vs PyTorch on batches "
                f"{', '.join(map(str, self.batch_sizes_checked))}: max |diff| "
                f"{self.max_abs_diff:.3g} (tolerance {self.atol:g} + {self.rtol:g} x max |logit| "
                f"{self.max_ref:.3g})")

    def to_dict(self) -> dict:
        return asdict(self)


def max_onnx_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"ONNX export needs onnx, onnxscript and onnxruntime ({exc.name} is "
                        "missing): pip install 'cnnarch[export]'") from None


def check_opset(opset) -> int:
    _require_onnx()
    top = max_onnx_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not ONNX_MIN_OPSET <= opset <= top:
        raise UserError(f"unsupported ONNX opset {opset!r}: PyTorch's torch.export-based exporter "
                        f"writes opsets {ONNX_MIN_OPSET}..{top} (installed onnx)")
    return opset


def onnx_session(model: str | os.PathLike | bytes, device: str | torch.device = "cpu"):
    """An onnxruntime session for a file or serialised model (CUDA where asked for and present)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores PyTorch uses
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers)


class ExportError(CnnarchError):
    """The exporter could not turn the model into ONNX."""

    exit_code = 1


def metadata(transform, name: str) -> dict[str, str]:
    """The ``metadata_props`` of an exported file (see the module docstring)."""
    values = {"input_size": list(transform.input_size), "mean": list(transform.mean),
              "std": list(transform.std), "resize": int(transform.resize),
              "classes": list(transform.classes)}
    props = {METADATA_PREFIX + k: json.dumps(v) for k, v in values.items()}
    props[METADATA_PREFIX + "preprocessing"] = PREPROCESSING
    props[METADATA_PREFIX + "model"] = name
    return props


def read_metadata(path: str | os.PathLike) -> dict:
    """The cnnarch entries of an ONNX file's ``metadata_props``, JSON values decoded."""
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    out = {}
    for prop in proto.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            key = prop.key[len(METADATA_PREFIX):]
            out[key] = prop.value if key in ("preprocessing", "model") else json.loads(prop.value)
    return out


def export_onnx(model: nn.Module, path: str | os.PathLike, transform, *,
                opset: int = ONNX_DEFAULT_OPSET, check_batches: tuple[int, ...] = (1, 3),
                rtol: float = ONNX_RTOL, atol: float = ATOL) -> OnnxReport:
    """Export ``model`` (fp32, eval) to ONNX with a dynamic batch dimension and verify it.

    ``transform``: the model's :class:`cnnarch.data.transform.EvalTransform` (its input size
    shapes the graph; all of it goes into the metadata), or a ``(C, H, W)`` input size
    (then mean 0, std 1 and no class names are recorded). The exported model is run in
    onnxruntime on ``check_batches`` random batches and compared with PyTorch; only then is
    it written to ``path``. A mismatch raises :class:`ToleranceError` and writes nothing.
    """
    from ..signals import interruptible
    from ..train.checkpoint import atomic_write_bytes

    opset = check_opset(opset)
    transform = _check_arguments(model, path, transform, check_batches, rtol, atol)
    c, h, w = transform.input_size
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name such as model.onnx")
    if not path.parent.exists():
        raise UserError(f"folder {path.parent} does not exist")
    model = copy.deepcopy(model).float().cpu().eval()
    _check_input(model, (c, h, w))
    start = time.perf_counter()
    with interruptible(f"the ONNX export stopped before {path} was written (nothing was written)"):
        data = _serialised(model, torch.randn(2, c, h, w), opset, metadata(transform, model_name(model)))
        export_time = time.perf_counter() - start
        max_diff, max_ref = _compare_with_runtime(model, data, (c, h, w), check_batches)
    passed = math.isfinite(max_diff) and max_diff <= atol + rtol * max_ref
    report = OnnxReport(os.fspath(path), opset, "torch.onnx.export(dynamo=True)", (c, h, w),
                        tuple(check_batches), max_diff, max_ref, rtol, atol, passed,
                        len(data), export_time)
    if not passed:
        raise ToleranceError(f"ONNX file disagrees with PyTorch: {report}")
    with interruptible(f"{path} was written whole and verified as the signal came"):
        atomic_write_bytes(path, lambda f: f.write(data))  # a signal waits until it is whole
    return report


def _check_arguments(model, path, transform, check_batches, rtol, atol):
    """A UserError naming the first bad argument of ``export_onnx``; -> the EvalTransform."""
    from ..data.transform import EvalTransform

    if not isinstance(model, nn.Module):
        raise UserError(f"export_onnx: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise UserError(f"export_onnx: path must be a file name (str or os.PathLike), got {path!r}")
    if not isinstance(transform, EvalTransform):
        size = tuple(transform) if isinstance(transform, (tuple, list)) else None
        if size is None or len(size) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
            raise UserError("export_onnx: transform must be an EvalTransform or a (C, H, W) input "
                            f"size of positive integers, got {transform!r}")
        transform = EvalTransform(size, (0.0,) * size[0], (1.0,) * size[0])
    if (not isinstance(check_batches, (tuple, list)) or not check_batches or not all(
            isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 65536 for b in check_batches)):
        raise UserError("export_onnx: check_batches must be one or more batch sizes in 1..65536 "
                        f"(a file is verified before it is written), got {check_batches!r}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol):
            raise UserError(f"export_onnx: {name} must be a finite number, got {tol!r}")
    return transform


def _check_input(model: nn.Module, size) -> None:
    """One forward of a zero image: one line when the model cannot take C x H x W."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UserError(f"export_onnx: the model does not take {'x'.join(map(str, size))} inputs "
                        f"(transform): {first_line(exc)[:200]}") from None


def _serialised(model: nn.Module, example: torch.Tensor, opset: int, props: dict) -> bytes:
    """The exported model as bytes, ``props`` added to its metadata_props."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory(prefix="cnnarch-onnx-") as tmp:
        file = Path(tmp) / "model.onnx"
        _export_program(model, example, opset).save(os.fspath(file), external_data=False)
        proto = onnx.load(os.fspath(file), load_external_data=False)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)
    if written != opset:
        raise UserError(f"unsupported ONNX opset {opset}: the exporter wrote opset {written}")
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _compare_with_runtime(model: nn.Module, data: bytes, size, batches) -> tuple[float, float]:
    """(max |onnxruntime - PyTorch|, max |PyTorch|) over random batches of ``batches`` sizes."""
    session = onnx_session(data)
    input_name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(0)
    max_diff = max_ref = 0.0
    for b in batches:
        x = torch.randn(b, *size, generator=gen)  # b x C x H x W
        with torch.no_grad():
            ref = model(x).float()
        got = torch.from_numpy(session.run(None, {input_name: x.numpy()})[0]).float()
        if got.shape != ref.shape:
            raise ToleranceError(f"onnxruntime returned shape {tuple(got.shape)} for batch {b}, "
                                 f"PyTorch {tuple(ref.shape)}")
        max_diff = max(max_diff, (got - ref).abs().max().item())
        max_ref = max(max_ref, ref.abs().max().item())
    return max_diff, max_ref


def _export_program(model: nn.Module, example: torch.Tensor, opset: int):
    """torch.onnx.export (torch.export-based, dynamo=True) with the batch dimension dynamic."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                     input_names=["images"], output_names=["logits"],
                                     dynamic_shapes=({0: batch},), verbose=False)
        except Exception as exc:
            raise ExportError(f"ONNX export failed: {first_line(exc)}") from exc
