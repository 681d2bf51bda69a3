"""Resume with every TrainConfig field changed, one at a time, the cases generated from the
dataclass (a field added later is tried without anyone writing its case).

The rule (train/resume.py) puts each field in one of three groups; what each must do:
REFUSED: a one-line UserError naming the flag, before anything is written (the run folder
byte-identical afterwards); NOTICED: the run continues and a ``changed: --flag a -> b``
line says so; SILENT: the run continues. ``out`` changed on a resume continues the run in
the new folder, which first gets the checkpoint resumed from (its history never ahead of
its checkpoints), and leaves the old one untouched; an ``out`` holding another run is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from cnnarch.errors import UserError
from cnnarch.train import TrainConfig, train
from cnnarch.train.checkpoint import load_checkpoint
from cnnarch.train.config import field_specs
from cnnarch.train.resume import NOTICED, REFUSED, SILENT, flag

BASE = dict(model="resnet20", data="synthetic:1x8x8:4:64", batch_size=16, epochs=2, warmup_epochs=0.0,
            device="cpu", quiet=True, val_split=False, workers=0, schedule="step", milestones=[1])

# free-form fields (no choices, not bool/int/float): a changed value that is valid alone
FREE_FORM = {"model": "plain20", "model_kwargs": {"shortcut": "B"}, "data": "synthetic:1x8x8:4:96",
             "device": "auto", "recipe": "cosine", "milestones": [1, 2]}
ZERO_INTS = {"iterations": 12, "image_size": 16}  # 0 means "unset": a value that is one
TRAINS_MORE = {"epochs", "iterations"}  # these run one more epoch; the rest finish at once


def changed_value(spec, base: TrainConfig, tmp: Path):
    """A value of ``spec``'s type, within its bounds, different from ``base``'s."""
    v = getattr(base, spec.name)
    if spec.name in ("out", "resume", "data_dir"):
        return str(tmp / spec.name)
    if spec.name in FREE_FORM:
        return FREE_FORM[spec.name]
    if spec.choices:
        return next(c for c in spec.choices if c != v)
    if spec.kind is bool:
        return not v
    if spec.kind is int:
        return ZERO_INTS.get(spec.name, 1) if v == 0 else v + 1
    if spec.kind is float:
        return 0.5 if v == 0 else v / 2
    raise AssertionError(f"no changed value for TrainConfig.{spec.name} ({spec.kind}); add one")


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("every-field") / "run"
    train(TrainConfig(out=str(out), **BASE))
    return out


SPECS = [s for s in field_specs() if s.name != "resume"]  # resume is the act itself


def test_the_groups_cover_every_field():
    names = {s.name for s in field_specs()}
    assert set(REFUSED) | set(NOTICED) | set(SILENT) == names
    assert not (set(REFUSED) & set(NOTICED)) and not (set(REFUSED) & set(SILENT))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_resume_with_one_field_changed(base_run, tmp_path, capsys, spec):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    base = TrainConfig(out=str(run), **BASE)
    new_value = changed_value(spec, base, tmp_path)
    if spec.name == "data_dir":
        os.mkdir(new_value)
    cfg = base.replace(**{spec.name: new_value, "resume": str(run)})
    before = snapshot(run)
    capsys.readouterr()
    if spec.name in REFUSED:
        with pytest.raises(UserError) as info:
            train(cfg)
        msg = str(info.value)
        assert "\n" not in msg
        assert flag(spec.name) in msg or (spec.name == "model" and new_value in msg), msg
        assert snapshot(run) == before, "a refused resume changed the run folder"
        return
    result = train(cfg)
    err = capsys.readouterr().err
    epochs = 3 if spec.name in TRAINS_MORE else 2
    assert [r["epoch"] for r in result.history] == list(range(1, epochs + 1))
    if spec.name in NOTICED:
        assert f"changed: {flag(spec.name)} " in err, err
    else:
        assert f"changed: {flag(spec.name)}" not in err, err
    if spec.name == "out":  # continued in the new folder, which gets the checkpoints first
        assert snapshot(run) == before
        assert f"continuing {run} in {new_value}" in err, err
        assert load_checkpoint(Path(new_value))["epoch"] == 2
    else:
        assert load_checkpoint(run)["epoch"] == epochs


def test_resume_into_a_folder_holding_another_run_is_refused(base_run, tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(base_run, run, symlinks=True)
    shutil.copytree(base_run, other, symlinks=True)
    (other / "checkpoints" / "best.pt").unlink()  # make the two folders tell apart
    before = snapshot(other)
    with pytest.raises(UserError, match="already holds a run"):
        train(TrainConfig(**{**BASE, "epochs": 3}, out=str(other), resume=str(run)))
    assert snapshot(other) == before


@pytest.mark.parametrize("start", ["last.pt", "best.pt"])
def test_resume_into_a_new_folder_resumes_there_on_its_own(base_run, tmp_path, start):
    run, branch = tmp_path / "run", tmp_path / "branch"
    shutil.copytree(base_run, run, symlinks=True)
    source = run / "checkpoints" / start
    epoch = load_checkpoint(source)["epoch"]
    train(TrainConfig(**BASE, out=str(branch), resume=str(source)))
    assert load_checkpoint(branch / "checkpoints" / "last.pt")["epoch"] == 2
    assert load_checkpoint(branch / "checkpoints" / "best.pt")["epoch"] <= 2
    result = train(TrainConfig(**{**BASE, "epochs": 3}, out=str(branch), resume=str(branch)))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert epoch <= 2
