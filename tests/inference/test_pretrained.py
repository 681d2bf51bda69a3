"""Pretrained weights by name: the whole download path against a local HTTP server.

Nothing here reaches the internet: the server serves files the tests make, under names that
carry their real (or a wrong) SHA-256 prefix, the way torchvision names its files.
"""

import functools
import hashlib
import http.server
import json
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from cnnarch.cli import main
from cnnarch.errors import UserError
from cnnarch.models import create_model, get_entry
from cnnarch.models import pretrained as pt


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests
    httpd.shutdown()
    httpd.server_close()


def _serve(root, stem: str, data: bytes, prefix: str | None = None) -> str:
    prefix = prefix or hashlib.sha256(data).hexdigest()[:8]
    name = f"{stem}-{prefix}.pth"
    (root / name).write_bytes(data)
    return name


def _spec(base: str, name: str, model: str = "resnet18") -> pt.Weights:
    return pt.Weights(model, "TEST", base + name, resize=256, top1=0.0, top5=0.0)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_download_checks_the_hash_and_keeps_the_normal_mode(server, tmp_path):
    base, root, requests = server
    name = _serve(root, "w", b"weights" * 1000)
    cache = tmp_path / "cache"
    path = pt.download(_spec(base, name), cache)
    assert path == cache / name and path.read_bytes() == b"weights" * 1000
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert pt.download(_spec(base, name), cache) == path  # cached: not fetched again
    assert len(requests) == 1
    assert [p.name for p in cache.iterdir()] == [name]


def test_a_wrong_hash_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    base, root, _ = server
    name = _serve(root, "w", b"tampered", prefix="deadbeef")
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="SHA-256 .* does not start with deadbeef"):
        pt.download(_spec(base, name), cache)
    assert list(cache.iterdir()) == []


def test_a_missing_file_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    base, _, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="cannot download"):
        pt.download(_spec(base, "nothing-01234567.pth"), cache)
    assert list(cache.iterdir()) == []


def test_weight_names():
    assert pt.get_weights("resnet50").name == "IMAGENET1K_V2"  # torchvision's DEFAULT
    assert pt.get_weights("resnet50", "imagenet1k_v1").file_name == "resnet50-0676ba61.pth"
    assert pt.get_weights("resnet50", "IMAGENET1K_V1").hash_prefix == "0676ba61"
    with pytest.raises(UserError, match="no pretrained weights"):
        pt.get_weights("resnet20")
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        pt.get_weights("resnet18", "V9")


def test_every_weight_file_names_a_registered_thousand_class_model():
    for model, table in pt.WEIGHTS.items():
        assert get_entry(model).name == model and pt.DEFAULT[model] in table
        for spec in table.values():
            assert len(spec.hash_prefix) == 8 and int(spec.hash_prefix, 16) >= 0
            assert spec.url.startswith("https://download.pytorch.org/models/")
            assert set(spec.model_kwargs) <= set(get_entry(model).options)
    t = pt.get_weights("resnet18").transform()
    assert len(t.classes) == 1000 and t.input_size == (3, 224, 224) and t.resize == 256


def test_predict_by_model_name_end_to_end(server, tmp_path, monkeypatch, capsys):
    """`cnnarch predict resnet18 IMAGE` downloads, checks, loads and preprocesses as the
    weights need (shorter side 256, centre crop 224, ImageNet mean and std)."""
    base, root, _ = server
    torch.manual_seed(0)
    reference = create_model("resnet18").eval()
    buffer = tmp_path / "state.pth"
    torch.save(reference.state_dict(), buffer)
    name = _serve(root, "resnet18", buffer.read_bytes())
    spec = _spec(base, name)
    monkeypatch.setitem(pt.WEIGHTS, "resnet18", {"IMAGENET1K_V1": spec})
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() then follows TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    image = tmp_path / "cat.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8), "RGB").save(image)
    assert main(["predict", "resnet18", str(image), "--top-k", "2", "--json", "--threads", "1"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert (tmp_path / "torch" / "hub" / "checkpoints" / name).is_file()
    x = spec.transform()(Image.open(image).convert("RGB"))  # 3 x 224 x 224
    with torch.no_grad():
        probs = torch.softmax(reference(x[None]), 1)[0]
    assert top[0]["class"] == int(probs.argmax())
    assert top[0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert top[0]["name"] == pt.imagenet_classes()[top[0]["class"]]


def test_predict_with_a_tampered_file_fails_in_one_line_and_caches_nothing(server, tmp_path,
                                                                           monkeypatch, capsys):
    base, root, _ = server
    name = _serve(root, "resnet18", b"not the published file", prefix="f37072fd")
    monkeypatch.setitem(pt.WEIGHTS, "resnet18", {"IMAGENET1K_V1": _spec(base, name)})
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "resnet18", str(image), "--weights", "IMAGENET1K_V1",
                 "--threads", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "does not start with f37072fd" in errors[0]
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_model_without_published_weights_is_named(capsys):
    assert main(["predict", "resnet20", "x.png", "--threads", "1"]) == 2
    assert "resnet20 has no published weights" in capsys.readouterr().err
