"""The Python API names the bad argument: public functions of the export, checkpoint, archive
and image modules given arguments of the wrong type or out of range raise one UserError
line naming the function and the argument, before any work (and never write a file their
own loader would refuse)."""

from __future__ import annotations

import math

import pytest
import torch

from cnnarch.data.archives import safe_extract
from cnnarch.data.images import open_image
from cnnarch.errors import UserError


@pytest.fixture(scope="module")
def model():
    from cnnarch.models import create_model

    return create_model("resnet20", num_classes=4, in_chans=1).eval()


EXPORT_CASES = {  # argument changed -> (kwargs, what the message must name)
    "model None": (dict(model=None), "model"),
    "model a state_dict": (dict(model={"w": torch.zeros(1)}), "model"),
    "path an int": (dict(path=123), "path"),
    "path empty": (dict(path=""), "path"),
    "transform a string": (dict(transform="abc"), "transform"),
    "transform two numbers": (dict(transform=(8, 8)), "transform"),
    "transform a bool channel": (dict(transform=(True, 8, 8)), "transform"),
    "transform of the wrong channels": (dict(transform=(3, 8, 8)), "transform"),
    "no check batches": (dict(check_batches=()), "check_batches"),
    "check batch 0": (dict(check_batches=(0,)), "check_batches"),
    "check batch 2.5": (dict(check_batches=(2.5,)), "check_batches"),
    "rtol infinite": (dict(rtol=math.inf), "rtol"),
    "atol NaN": (dict(atol=math.nan), "atol"),
    "rtol a string": (dict(rtol="0.1"), "rtol"),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_onnx_names_the_bad_argument(tmp_path, model, case):
    from cnnarch.inference.onnx_export import export_onnx

    kwargs = dict(model=model, path=tmp_path / "m.onnx", transform=(1, 8, 8))
    changed, name = EXPORT_CASES[case]
    kwargs.update(changed)
    with pytest.raises(UserError) as info:
        export_onnx(kwargs.pop("model"), kwargs.pop("path"), kwargs.pop("transform"), **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and name in msg, msg
    assert list(tmp_path.iterdir()) == []


def test_export_onnx_control_writes_a_verified_file(tmp_path, model):
    """Control: the unchanged arguments export (each refusal above is its argument's doing)."""
    from cnnarch.inference.onnx_export import export_onnx

    report = export_onnx(model, tmp_path / "m.onnx", (1, 8, 8))
    assert report.passed and (tmp_path / "m.onnx").stat().st_size == report.file_bytes


def _state():
    from cnnarch.train.checkpoint import FORMAT, VERSION

    return {"format": FORMAT, "version": VERSION, "model": {"w": torch.zeros(2)}}


OTHER_CASES = {
    "load_checkpoint(None)": ("load_checkpoint", lambda ck, d: ck.load_checkpoint(None), "path"),
    "load_checkpoint(123)": ("load_checkpoint", lambda ck, d: ck.load_checkpoint(123), "path"),
    "load_model(None)": ("load_model", lambda ck, d: ck.load_model(None), "path"),
    "find_checkpoint(prefer='x')": ("find_checkpoint", lambda ck, d: ck.find_checkpoint(d, prefer="x"), "prefer"),
    "save_checkpoint(state=None)": ("save_checkpoint", lambda ck, d: ck.save_checkpoint(d / "x.pt", None), "state"),
    "save_checkpoint(a plain dict)": ("save_checkpoint",
                                      lambda ck, d: ck.save_checkpoint(d / "x.pt", {"w": torch.zeros(1)}), "state"),
    "save_checkpoint(an object inside)": ("save_checkpoint", lambda ck, d: ck.save_checkpoint(
        d / "x.pt", {**_state(), "meta": {"note": object()}}), "state['meta']['note']"),
    "save_checkpoint(path None)": ("save_checkpoint", lambda ck, d: ck.save_checkpoint(None, _state()), "path"),
}


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_checkpoint_functions_name_the_bad_argument(tmp_path, case):
    import cnnarch.train.checkpoint as ck

    function, call, name = OTHER_CASES[case]
    with pytest.raises(UserError) as info:
        call(ck, tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and name in msg and (function in msg or "load_checkpoint" in msg), msg
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_save_checkpoint_control_round_trips(tmp_path):
    import cnnarch.train.checkpoint as ck

    ck.save_checkpoint(tmp_path / "x.pt", _state())
    assert torch.equal(torch.load(tmp_path / "x.pt", weights_only=True)["model"]["w"], torch.zeros(2))


DATA_CASES = {
    "safe_extract(None)": (lambda d: safe_extract(None, d), "archive"),
    "safe_extract(a folder)": (lambda d: safe_extract(d, d / "t"), "folder"),
    "open_image(None)": (lambda d: open_image(None), "path"),
    "open_image(max_pixels=0)": (lambda d: open_image(d / "x.png", max_pixels=0), "max_pixels"),
    "open_image(max_pixels='a')": (lambda d: open_image(d / "x.png", max_pixels="a"), "max_pixels"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_functions_name_the_bad_argument(tmp_path, case):
    call, name = DATA_CASES[case]
    with pytest.raises(UserError) as info:
        call(tmp_path)
    assert "\n" not in str(info.value) and name in str(info.value), str(info.value)
