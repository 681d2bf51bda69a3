"""`cnnarch bench | export | predict` end to end, on real image files and a real checkpoint."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnarch.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A checkpoint from the training engine: resnet20 on digits (8x8, 1 channel), 2 steps."""
    from cnnarch.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(TrainConfig(model="resnet20", data="digits", iterations=2, batch_size=64,
                      warmup_epochs=0, out=str(out), quiet=True, precision="fp32"))
    assert (out / "checkpoints" / "last.pt").is_file()
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real files of other sizes and modes than the model's 8x8 grey input."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    rgb = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8), "RGB")
    rgb.save(folder / "a.png")
    rgb.save(folder / "b.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (5, 9), dtype=np.uint8), "L").save(folder / "c.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(folder / "d.png")
    for name in ("a.png", "b.jpg", "c.png", "d.png"):
        paths.append(str(folder / name))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return paths, str(folder / "broken.png")


def test_predict_top_k_json(run_dir, images, capsys):
    paths, _ = images
    assert main(["predict", str(run_dir), *paths, "--top-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in out] == paths
    for r in out:
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert all(0 <= p <= 1 for p in probs)
        assert {t["name"] for t in r["top"]} <= {str(i) for i in range(10)}


def test_predict_matches_the_model(run_dir, images, capsys):
    """The CLI's probabilities are the model's softmax on the preprocessed image."""
    from cnnarch.inference import load_image
    from cnnarch.train.checkpoint import load_model

    paths, _ = images
    model, meta = load_model(run_dir)
    x = load_image(paths[0], 1, (8, 8))
    assert x.shape == (1, 8, 8) and 0 <= x.min() and x.max() <= 1
    mean = torch.tensor(meta["mean"]).view(-1, 1, 1)
    std = torch.tensor(meta["std"]).view(-1, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(model(((x - mean) / std)[None]), 1)[0]
    assert main(["predict", str(run_dir), paths[0], "--top-k", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    assert top["class"] == int(probs.argmax())
    assert top["prob"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_predict_text_output(run_dir, images, capsys):
    paths, _ = images
    assert main(["predict", str(run_dir), paths[1]]) == 0
    assert capsys.readouterr().out.startswith(paths[1] + ":")


def test_export_verifies_with_onnxruntime(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    target = tmp_path / "digits.onnx"
    assert main(["export", str(run_dir), "--onnx", str(target), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["opset"] == 18 and target.is_file()
    assert report["input_size"] == [1, 8, 8]


def _error(capsys, argv) -> str:
    """The one error line (stderr may also carry the thread-count notice before it)."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines()
             if not line.startswith("threads: ")]
    assert len(lines) == 1
    return lines[0]


def test_bad_inputs_exit_2(run_dir, images, tmp_path, capsys):
    paths, broken = images
    assert "cannot decode image" in _error(capsys, ["predict", str(run_dir), broken])
    assert "not found" in _error(capsys, ["predict", str(run_dir), str(tmp_path / "nope.png")])
    assert "not found" in _error(capsys, ["predict", str(tmp_path / "none.pt"), paths[0]])
    assert "opset" in _error(capsys, ["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx"),
                                      "--opset", "9"])
    assert not (tmp_path / "m.onnx").exists()
    assert "unknown model" in _error(capsys, ["bench", "resnet7"])
    with pytest.raises(SystemExit) as exc:
        main(["bench", "resnet20", "--input-size", "3,32"])
    assert exc.value.code == 2


def test_checkpoint_of_unknown_model_exit_2(run_dir, tmp_path, capsys):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["meta"]["model"] = "resnet9000"
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    err = _error(capsys, ["predict", str(bad), "x.png"])
    assert "resnet9000" in err
    err = _error(capsys, ["export", str(bad), "--onnx", str(tmp_path / "m.onnx")])
    assert "resnet9000" in err


def test_predict_uses_the_checkpoints_stored_transform(run_dir, images, tmp_path, capsys):
    """predict preprocesses through meta["transform"] (what eval uses), not its own rule."""
    from cnnarch.data.images import open_image
    from cnnarch.data.transform import EvalTransform
    from cnnarch.train.checkpoint import load_model

    paths, _ = images
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    transform = EvalTransform((1, 8, 8), (0.3,), (0.2,), tuple("abcdefghij"), resize=10)
    state["meta"]["transform"] = transform.to_dict()
    changed = tmp_path / "changed.pt"
    torch.save(state, changed)
    model, _ = load_model(changed)
    with torch.no_grad():
        probs = torch.softmax(model(transform(open_image(paths[0]))[None]), 1)[0]
    assert main(["predict", str(changed), paths[0], "--top-k", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    assert top["name"] == "abcdefghij"[int(probs.argmax())]
    assert top["prob"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_export_writes_the_checkpoints_transform(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from cnnarch.data.transform import EvalTransform
    from cnnarch.inference import read_metadata
    from cnnarch.train.checkpoint import load_model

    target = tmp_path / "digits.onnx"
    assert main(["export", str(run_dir), "--onnx", str(target)]) == 0
    _, meta = load_model(run_dir)
    stored = EvalTransform.from_meta(meta)
    written = read_metadata(target)
    assert written["mean"] == pytest.approx(list(stored.mean))
    assert written["std"] == pytest.approx(list(stored.std))
    assert written["input_size"] == [1, 8, 8] and written["classes"] == list(stored.classes)
