"""No code from data: checkpoint and weights files that would run code when unpickled are
refused (one clear line, exit 2 on the CLI) and the code never runs; torn, empty, foreign
and mismatched files are refused the same way.

Each malicious file writes a marker file when unpickled; a control check proves that
``torch.load(weights_only=False)`` really would run it.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct

import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.models import create_model
from cnnarch.models.compat import from_torchvision, read_state_dict
from cnnarch.train.checkpoint import load_checkpoint, load_model

VARIANTS = ["zip", "legacy", "raw-pickle", "real-checkpoint+payload"]


def _make(evil, variant: str, path, tiny_run):
    if variant == "zip":
        return evil.checkpoint_like(path)
    if variant == "legacy":
        return evil.checkpoint_like(path, legacy=True)
    if variant == "raw-pickle":
        return evil.raw_pickle(path)
    base = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    return evil.checkpoint_like(path, base=base)


@pytest.mark.parametrize("variant", VARIANTS)
def test_payload_is_real(evil_pickle, tmp_path, tiny_run, variant):
    """Control: the files do run code under an unsafe load (so the refusals below mean it)."""
    path = _make(evil_pickle, variant, tmp_path / "evil.pt", tiny_run)
    try:
        torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - the raw pickle is not a torch file, the code still ran
        pass
    assert evil_pickle.marker.exists()


@pytest.mark.parametrize("variant", VARIANTS)
def test_python_api_refuses_code(evil_pickle, tmp_path, tiny_run, variant):
    path = _make(evil_pickle, variant, tmp_path / "evil.pt", tiny_run)
    for load in (load_model, load_checkpoint, read_state_dict,
                 lambda p: from_torchvision("resnet18", p)):
        with pytest.raises(UserError) as info:
            load(path)
        assert "\n" not in str(info.value)
        evil_pickle.assert_not_run()


def test_run_folder_with_evil_last_pt(evil_pickle, copy_run):
    run = copy_run()
    evil_pickle.checkpoint_like(run / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="refusing"):
        load_model(run)
    evil_pickle.assert_not_run()


def test_compat_state_dict_with_payload(evil_pickle, tmp_path):
    sd = create_model("resnet18", num_classes=3).state_dict()
    path = evil_pickle.state_dict_like(tmp_path / "resnet18.pth", sd)
    with pytest.raises(UserError, match="safely"):
        from_torchvision("resnet18", path)
    evil_pickle.assert_not_run()


def test_cli_train_resume_refuses_code(evil_pickle, copy_run, cli, user_error):
    run = copy_run()
    base = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    evil_pickle.checkpoint_like(run / "checkpoints" / "last.pt", base=base)
    result = cli(["train", "--resume", str(run)])
    user_error(result, "refusing")
    evil_pickle.assert_not_run()


@pytest.mark.parametrize("variant", VARIANTS)
def test_cli_eval_refuses_code(evil_pickle, tmp_path, tiny_run, cli, user_error, variant):
    path = _make(evil_pickle, variant, tmp_path / "evil.pt", tiny_run)
    user_error(cli(["eval", str(path), "--device", "cpu"]))
    evil_pickle.assert_not_run()


def _speed_commands():
    from cnnarch.cli import build_parser

    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None)
               and isinstance(a.choices, dict))
    return set(sub.choices)


def _predict_argv(path, image):
    return ["predict", str(path), str(image)]


@pytest.mark.parametrize("command", ["predict", "export"])
def test_cli_predict_export_refuse_code(evil_pickle, tmp_path, tiny_run, cli, user_error, command):
    if command not in _speed_commands():
        pytest.skip(f"`cnnarch {command}` has not landed yet")
    path = _make(evil_pickle, "real-checkpoint+payload", tmp_path / "evil.pt", tiny_run)
    if command == "predict":
        image = tmp_path / "x.png"
        _write_png(image, 8, 8, 1)
        argv = _predict_argv(path, image)
    else:
        argv = ["export", str(path), "--onnx", str(tmp_path / "m.onnx")]
    user_error(cli(argv))
    evil_pickle.assert_not_run()
    assert not (tmp_path / "m.onnx").exists()


def _write_png(path, h, w, c):
    from PIL import Image

    mode = {1: "L", 3: "RGB"}[c]
    Image.new(mode, (w, h), color=128 if c == 1 else (10, 20, 30)).save(path)


# --- torn and foreign files -----------------------------------------------------------------

def _corruptions(tiny_run, tmp_path):
    good = (tiny_run / "checkpoints" / "last.pt").read_bytes()
    yield "empty", b""
    yield "truncated-half", good[: len(good) // 2]
    yield "truncated-tail", good[:-100]
    yield "one-byte", good[:1]
    flipped = bytearray(good)
    for i in range(1000, len(flipped), 4096):
        flipped[i] ^= 0xFF
    yield "bit-flips", bytes(flipped)
    yield "text", b"hello, I am not a checkpoint\n"
    yield "random", os.urandom(4096)
    p = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(3)}, p)
    yield "foreign-dict", p.read_bytes()
    torch.save([1, 2, 3], p)
    yield "list", p.read_bytes()
    torch.save(torch.zeros(3), p)
    yield "tensor", p.read_bytes()


def test_torn_and_foreign_checkpoints(tiny_run, tmp_path, cli, user_error, reliability_log):
    n = 0
    for name, data in _corruptions(tiny_run, tmp_path):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(UserError):
            load_model(path)
        user_error(cli(["eval", str(path), "--device", "cpu"]))
        n += 1
    reliability_log["torn/foreign checkpoint files"] = n


def _tensor_spans(data: bytes):
    """(name, start, end) of each tensor member's bytes inside a torch zip file."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if "/data/" in info.filename and info.file_size:
                # the local header's extra field can differ from the central one's: read it
                n_name, n_extra = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
                start = info.header_offset + 30 + n_name + n_extra
                yield info.filename, start, start + info.file_size


def test_one_flipped_bit_anywhere_in_the_weights_is_refused(tiny_run, tmp_path, cli, user_error):
    """A single bit flipped inside any tensor's bytes (weights, optimizer state, BN
    statistics): the zip's per-member CRC-32 catches it, for load_model, eval and resume."""
    good = (tiny_run / "checkpoints" / "last.pt").read_bytes()
    spans = list(_tensor_spans(good))
    assert len(spans) > 20
    rng = random.Random(0)
    for k, (member, start, end) in enumerate(rng.sample(spans, 12)):
        at, bit = rng.randrange(start, end), 1 << rng.randrange(8)
        flipped = bytearray(good)
        flipped[at] ^= bit
        path = tmp_path / f"flip{k}.pt"
        path.write_bytes(bytes(flipped))
        with pytest.raises(UserError, match="CRC-32") as info:
            load_model(path)
        assert member in str(info.value) and "\n" not in str(info.value)
    user_error(cli(["eval", str(path), "--device", "cpu"]), "CRC-32")
    assert load_model(tiny_run / "checkpoints" / "last.pt") is not None  # control: the intact file


def test_checkpoint_of_another_architecture(copy_run, cli, user_error):
    run = copy_run()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["meta"]["model"] = "resnet32"  # weights are resnet20's
    torch.save(state, run / "checkpoints" / "last.pt")
    with pytest.raises(UserError):
        load_model(run)
    user_error(cli(["eval", str(run), "--device", "cpu"]))
    state["meta"]["model"] = "no-such-model"
    torch.save(state, run / "checkpoints" / "last.pt")
    user_error(cli(["eval", str(run), "--device", "cpu"]), "no-such-model")


def test_missing_checkpoint_paths(tmp_path, cli, user_error):
    user_error(cli(["eval", str(tmp_path / "nope.pt"), "--device", "cpu"]), "not found")
    user_error(cli(["eval", str(tmp_path), "--device", "cpu"]), "no checkpoint")
    user_error(cli(["train", "--resume", str(tmp_path / "nope")]))


def test_good_checkpoint_still_loads(tiny_run, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns(".lock"))
    model, meta = load_model(dest)
    assert meta["model"] == "resnet20" and not model.training


def _structural_damage(base: dict):
    """Checkpoints with the right format tag but parts missing or of the wrong type."""
    yield "only-format", {"format": base["format"], "version": 1}
    for key in ("model", "meta", "optimizer", "rng", "epoch"):
        yield f"no-{key}", {k: v for k, v in base.items() if k != key}
    for key in ("model", "num_classes", "in_chans"):
        yield f"meta-no-{key}", dict(base, meta={k: v for k, v in base["meta"].items() if k != key})
    yield "meta-list", dict(base, meta=[1, 2])
    yield "model-list", dict(base, model=[1, 2])
    yield "num-classes-text", dict(base, meta=dict(base["meta"], num_classes="many"))
    yield "num-classes-negative", dict(base, meta=dict(base["meta"], num_classes=-3))
    yield "model-kwargs-junk", dict(base, meta=dict(base["meta"], model_kwargs={"shortcut": "Z"}))
    yield "weights-wrong-shape", dict(base, model={k: v[..., :1] if v.ndim else v
                                                  for k, v in base["model"].items()})


def test_structurally_broken_checkpoints(copy_run, cli, user_error, reliability_log):
    run = copy_run()
    last = run / "checkpoints" / "last.pt"
    base = torch.load(last, weights_only=True)
    n = 0
    for name, state in _structural_damage(base):
        torch.save(state, last)
        (run / "checkpoints" / "best.pt").unlink(missing_ok=True)
        result = cli(["eval", str(run), "--device", "cpu"])
        assert result.code == 2, f"{name}: exit {result.code}: {result.err[-1500:]}"
        user_error(result)
        result = cli(["train", "--resume", str(run), "--quiet"])
        assert result.code == 2, f"{name} (resume): exit {result.code}: {result.err[-1500:]}"
        user_error(result)
        n += 1
    reliability_log["structurally broken checkpoints (eval + resume)"] = n
