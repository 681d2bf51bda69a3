"""Bad tensors: wrong channel count, too-small images, empty batches, integer or NaN inputs to
a model, to ``predict`` and to ``eval``: a clear error, never silent garbage.

Decision: the models validate shape, channels, emptiness and dtype (``check_input``, cheap
Python checks) but not the values; NaN in -> NaN out (visible, never masked). The paths
that print answers to users (``predict``, ``eval``) refuse non-finite inputs and outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.models import create_model

MODELS = [("resnet20", 3, 32), ("plain20", 1, 8), ("googlenet_small", 3, 32), ("resnet18", 3, 64)]


def _bad_inputs(c: int, s: int, small: int):
    yield "wrong-channels", torch.randn(2, c + 1, s, s), ValueError
    yield "too-small", torch.randn(2, c, small, small), ValueError
    yield "empty-batch", torch.randn(0, c, s, s), ValueError
    yield "int64", torch.randint(0, 255, (2, c, s, s)), TypeError
    yield "uint8", torch.randint(0, 255, (2, c, s, s), dtype=torch.uint8), TypeError
    yield "bool", torch.ones(2, c, s, s, dtype=torch.bool), TypeError
    yield "3-d", torch.randn(c, s, s), ValueError
    yield "5-d", torch.randn(1, 2, c, s, s), ValueError
    yield "numpy", np.zeros((2, c, s, s), np.float32), TypeError
    yield "float64", torch.randn(2, c, s, s, dtype=torch.float64), (TypeError, RuntimeError)


@pytest.mark.parametrize("name,c,s", MODELS)
def test_models_refuse_bad_batches(name, c, s, reliability_log):
    model = create_model(name, num_classes=5, in_chans=c).eval()
    n = 0
    for case, x, error in _bad_inputs(c, s, model.min_input_size - 1):
        with pytest.raises(error) as info:
            model(x)
        assert str(info.value).strip(), case
        if error is not ValueError or case != "too-small":
            assert len(str(info.value).splitlines()) == 1, (case, str(info.value))
        n += 1
    with torch.no_grad():  # NaN in -> NaN out: visible, not masked
        x = torch.randn(2, c, s, s)
        x[0, 0, 0, 0] = float("nan")
        assert torch.isnan(model(x)[0]).any()
    key = "bad model inputs (4 models)"
    reliability_log[key] = reliability_log.get(key, 0) + n + 1


# --- predict ------------------------------------------------------------------------------

def _png(path, array, mode=None):
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_predict_odd_but_valid_images(tiny_run, tmp_path, cli):
    """Other sizes, RGB/RGBA/palette images for a 1-channel model: converted, answered."""
    from PIL import Image

    paths = [_png(tmp_path / "big.png", np.full((300, 200), 7, np.uint8)),
             _png(tmp_path / "tiny.png", np.zeros((1, 1), np.uint8)),
             _png(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8)),
             _png(tmp_path / "rgba.png", np.zeros((8, 8, 4), np.uint8))]
    Image.new("P", (5, 9)).save(tmp_path / "pal.gif")
    paths.append(tmp_path / "pal.gif")
    result = cli(["predict", str(tiny_run), *map(str, paths), "--json"])
    assert result.code == 0, result.err
    import json

    for r in json.loads(result.out):
        assert all(np.isfinite(t["prob"]) for t in r["top"])


def _bad_image_files(tmp_path):
    good = _png(tmp_path / "good.png", np.zeros((8, 8), np.uint8)).read_bytes()
    for name, data in {"empty.png": b"", "truncated.png": good[: len(good) // 2],
                       "text.png": b"not an image", "random.jpg": bytes(range(256)) * 4}.items():
        (tmp_path / name).write_bytes(data)
        yield name
    (tmp_path / "folder.png").mkdir()
    yield "folder.png"
    yield "missing.png"
    yield "ünïcødé ✓/missing.png"


def test_predict_bad_image_files(tiny_run, tmp_path, cli, user_error, reliability_log):
    n = 0
    for name in _bad_image_files(tmp_path):
        user_error(cli(["predict", str(tiny_run), str(tmp_path / name)]))
        n += 1
    user_error(cli(["predict", str(tiny_run), str(tmp_path / "good.png"), "--top-k", "0"]))
    reliability_log["bad image files to predict"] = n + 1


def _damaged_checkpoint(tiny_run, tmp_path, how: str):
    state = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    if how == "std-zero":  # the old fields and the stored transform alike
        state["meta"]["std"] = state["meta"]["transform"]["std"] = [0.0]
    elif how == "mean-nan":
        state["meta"]["mean"] = state["meta"]["transform"]["mean"] = [float("nan")]
    elif how == "weights-nan":
        state["model"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                          for k, v in state["model"].items()}
    path = tmp_path / f"{how}.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("how", ["std-zero", "mean-nan", "weights-nan"])
def test_predict_refuses_nonfinite(tiny_run, tmp_path, cli, user_error, how):
    """A checkpoint whose normalisation or weights turn an image into NaN: refused, not
    answered with NaN probabilities and an arbitrary class."""
    ckpt = _damaged_checkpoint(tiny_run, tmp_path, how)
    image = _png(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    needle = {"std-zero": "std", "mean-nan": "mean"}.get(how, "non-finite")
    user_error(cli(["predict", str(ckpt), str(image)]), needle)


def test_predict_refuses_float_image_with_nan(tiny_run, tmp_path, cli, user_error):
    f = np.full((8, 8), np.nan, dtype=np.float32)
    path = tmp_path / "nan.tiff"
    _png(path, f)
    user_error(cli(["predict", str(tiny_run), str(path)]), "finite")


def test_predict_16bit_png_is_not_saturated(tmp_path):
    from cnnarch.export import load_image

    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    x = load_image(_png(tmp_path / "g16.png", a), 1, (8, 8))
    assert (x == 1).float().mean() < 0.1


# --- eval ---------------------------------------------------------------------------------

def test_eval_refuses_nan_model(tiny_run, tmp_path, cli, user_error):
    """A checkpoint with NaN weights: eval must not print a top-1 computed from NaN logits."""
    ckpt = _damaged_checkpoint(tiny_run, tmp_path, "weights-nan")
    user_error(cli(["eval", str(ckpt), "--device", "cpu"]), "non-finite")


@pytest.mark.parametrize("batch", ["0", "-5"])
def test_eval_bad_batch_size(tiny_run, cli, user_error, batch):
    user_error(cli(["eval", str(tiny_run), "--device", "cpu", "--batch-size", batch]), "batch")


def test_evaluate_api_empty_split(tiny_run):
    from cnnarch.data import load_dataset
    from cnnarch.train import evaluate
    from cnnarch.train.checkpoint import load_model

    model, _ = load_model(tiny_run)
    data = load_dataset("synthetic:1x8x8:4:64")
    data.test_images, data.test_labels = data.test_images[:0], data.test_labels[:0]
    with pytest.raises(UserError, match="empty"):
        evaluate(model, data)
