"""EvalTransform: one preprocessing path, round-tripped through checkpoints; bounded image opening."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnarch.data import load_dataset
from cnnarch.data.images import open_image
from cnnarch.data.transform import EvalTransform
from cnnarch.errors import UserError


def test_round_trip_and_from_old_meta():
    t = EvalTransform((3, 32, 32), (0.5, 0.4, 0.3), (0.2, 0.2, 0.25), ("a", "b"), 36)
    assert EvalTransform.from_dict(t.to_dict()) == t
    assert EvalTransform.from_meta({"transform": t.to_dict()}) == t
    old = EvalTransform.from_meta({"input_size": [1, 8, 8], "mean": [0.3], "std": [0.4],
                                   "classes": ["0", "1"]})
    assert old.resize == 0 and old.input_size == (1, 8, 8)


@pytest.mark.parametrize("bad", [
    {"input_size": (3, 0, 8), "mean": (0,) * 3, "std": (1,) * 3},
    {"input_size": (2, 8, 8), "mean": (0,) * 2, "std": (1,) * 2},
    {"input_size": (3, 8, 8), "mean": (0,), "std": (1,) * 3},
    {"input_size": (1, 8, 8), "mean": (float("nan"),), "std": (1,)},
    {"input_size": (1, 8, 8), "mean": (0,), "std": (0,)},
    {"input_size": (1, 8, 8), "mean": (0,), "std": (1,), "resize": -1},
    {"input_size": (1, 8, 8), "mean": (0,), "std": (1,), "extra": 1},
])
def test_bad_transforms_are_refused(bad):
    with pytest.raises(UserError):
        EvalTransform.from_dict(bad)


def test_apply_matches_the_dataset_normalisation():
    data = load_dataset("digits")
    t = data.eval_transform
    x = data.test_images[:7]
    assert torch.allclose(t.apply(x), data.normalize(x), atol=1e-6)  # batched uint8
    assert torch.allclose(t.apply(x[0]), data.normalize(x[:1])[0], atol=1e-6)


def test_apply_resizes_crops_and_converts_channels():
    t = EvalTransform((3, 16, 16), (0.0,) * 3, (1.0,) * 3, (), 18)
    img = Image.fromarray(np.full((40, 20, 3), 200, np.uint8))  # 20 wide, 40 high
    x = t.apply(img)
    assert x.shape == (3, 16, 16) and torch.allclose(x, torch.full_like(x, 200 / 255), atol=1e-3)
    grey = EvalTransform((1, 8, 8), (0.0,), (1.0,))
    rgb = torch.zeros(3, 8, 8, dtype=torch.uint8)
    rgb[1] = 255  # pure green: luma 0.587
    assert torch.allclose(grey.apply(rgb), torch.full((1, 8, 8), round(0.587 * 255) / 255), atol=1e-6)
    assert t.apply(torch.zeros(1, 5, 9, dtype=torch.uint8)).shape == (3, 16, 16)
    with pytest.raises(UserError):
        t.apply(torch.zeros(3, 8, 8))  # float, not uint8
    with pytest.raises(UserError):
        t.apply("not an image")


def test_imagefolder_eval_transform_is_what_it_evaluates(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", workers=0)
    assert d.image_size == (20, 20)  # native: the median shorter side
    t = d.eval_transform
    assert t.resize == 22 and t.classes == ("a", "b")
    x, _ = next(d.eval_batches(100))
    paths = [p for p, _ in d._test]
    expected = torch.stack([t.apply(open_image(p).convert("RGB")) for p in paths])
    assert torch.equal(x, expected)


def test_open_image_refuses_decompression_bombs(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (9000, 8000), 0).save(path)  # 72 M pixels, a few KB on disk
    assert path.stat().st_size < 200_000
    with pytest.raises(UserError, match="bomb.png.*9000 x 8000"):
        open_image(path)
    assert open_image(path, max_pixels=10**8).size == (9000, 8000)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "F", "1", "CMYK"])
def test_open_image_gives_plain_modes(tmp_path, mode):
    img = Image.new("RGB", (5, 4), (10, 200, 30)).convert(mode)
    path = tmp_path / f"x.{'tif' if mode in ('F', 'I;16', 'CMYK') else 'png'}"
    img.save(path)
    assert open_image(path).mode in ("L", "RGB")


def test_open_image_bad_files_are_one_line(tmp_path):
    for content in (b"", b"garbage", b"\x89PNG\r\n\x1a\n" + b"\0" * 20):
        (tmp_path / "bad.png").write_bytes(content)
        with pytest.raises(UserError, match="bad.png") as info:
            open_image(tmp_path / "bad.png")
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="folder"):
        open_image(tmp_path)
    with pytest.raises(UserError, match="not found"):
        open_image(tmp_path / "missing.png")
