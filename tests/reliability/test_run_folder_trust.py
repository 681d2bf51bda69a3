"""A run folder is one run; never write through what is not ours; full and read-only disks.

Each class is tried over more than the one example that found it: every refused resume
flag, every kind of foreign --out folder, symlinks at each of our file names, a disk error
at each write of an epoch. See docs/reliability.md.
"""

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from cnnarch.errors import UserError
from cnnarch.train import TrainConfig, train
from cnnarch.train.checkpoint import load_checkpoint, save_checkpoint
from cnnarch.train.logging import read_metrics
from cnnarch.train.resume import NOTICED, REFUSED

FAST = dict(model="resnet20", data="synthetic:1x8x8:4:64", batch_size=16, warmup_epochs=0.0,
            device="cpu", quiet=True, val_split=False)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (links as their target text) -> its sha256."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trust") / "run"
    train(TrainConfig(epochs=2, out=str(out), **FAST))
    return out


@pytest.fixture
def run(two_epoch_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(two_epoch_run, dst, symlinks=True)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


# --- 1. a run folder is one run ---------------------------------------------------------------

# one changed value for every field the rule refuses (the class, not the reported examples)
REFUSED_CHANGES = {
    "model_kwargs": ["--model-kwargs", '{"shortcut": "B"}'], "data": ["--data", "synthetic:1x8x8:4:96"],
    "val_split": ["--val-split"], "image_size": ["--image-size", "16"], "batch_size": ["--batch-size", "8"],
    "optimizer": ["--optimizer", "adamw"], "nesterov": ["--nesterov"], "schedule": ["--schedule", "step"],
    "milestones": ["--milestones", "1"], "milestone_unit": ["--milestone-unit", "iteration"],
    "gamma": ["--gamma", "0.5"], "warmup_epochs": ["--warmup-epochs", "1"],
    "warmup_until_error": ["--warmup-until-error", "0.5"], "label_smoothing": ["--label-smoothing", "0.1"],
    "aux_weight": ["--aux-weight", "0.5"], "seed": ["--seed", "1"], "sync_bn": ["--sync-bn"],
    "recipe": ["--recipe", "cosine"],
}


FAST_CASES = ("batch_size", "optimizer", "model_kwargs")  # in `make test`; the rest in test-all


def some_fast(values, fast):
    """Parameters for the values; those not in ``fast`` are marked slow."""
    return [v if v in fast else pytest.param(v, marks=pytest.mark.slow) for v in values]


def test_every_refused_field_is_tried():
    assert set(REFUSED) - {"model"} == set(REFUSED_CHANGES)  # model: its own check below


@pytest.mark.parametrize("field", some_fast(sorted(REFUSED_CHANGES), FAST_CASES))
def test_resume_refuses_a_changed_run_and_writes_nothing(cli, user_error, run, field):
    before = snapshot(run)
    result = cli(["train", "--resume", str(run), "--epochs", "3", *REFUSED_CHANGES[field]])
    flag = REFUSED_CHANGES[field][0]
    if field in ("recipe",):  # a recipe changes the fields it sets; the first one is named
        assert result.code == 2 and "cannot resume with --" in result.err
    else:
        user_error(result, f"cannot resume with {flag}")
    assert snapshot(run) == before


def test_resume_as_another_model_and_shorter_runs_are_refused(cli, user_error, run):
    before = snapshot(run)
    user_error(cli(["train", "plain20", "--resume", str(run)]), "as plain20")
    user_error(cli(["train", "--resume", str(run), "--epochs", "1"]), "already done 2 epochs")
    user_error(cli(["train", "--resume", str(run), "--iterations", "5"]), "already done 2 epochs")
    assert snapshot(run) == before


def test_allowed_changes_are_announced(cli, run):
    result = cli(["train", "--resume", str(run), "--epochs", "3", "--lr", "0.05", "--eval-every", "1"])
    assert result.code == 0, result.err
    assert "resuming" in result.err and "from epoch 2 of 3" in result.err
    assert "--epochs 2 -> 3" in result.err and "schedule now spans" in result.err
    assert "--lr 0.1 -> 0.05" in result.err
    assert "resumed after epoch 2" in result.out
    assert set(NOTICED) & set(REFUSED) == set()


def test_missing_run_folder_is_named(cli, user_error, tmp_path):
    user_error(cli(["train", "--resume", str(tmp_path / "nope")]), "does not exist")
    (tmp_path / "empty").mkdir()
    user_error(cli(["train", "--resume", str(tmp_path / "empty")]), "not a run folder")


def test_config_is_recovered_from_last_pt(cli, run):
    (run / "config.toml").unlink()
    result = cli(["train", "--resume", str(run), "--epochs", "3"])
    assert result.code == 0, result.err
    assert (run / "config.toml").is_file() and load_checkpoint(run)["epoch"] == 3


@pytest.mark.parametrize("version", some_fast([2, 99, 0, "1", None], (2, None)))
def test_checkpoint_format_version_is_checked(cli, user_error, run, version):
    state = load_checkpoint(run)
    state["version"] = version
    save_checkpoint(run / "checkpoints" / "last.pt", state)
    match = "newer cnnarch" if isinstance(version, int) and version > 1 else "format version"
    for argv in (["eval", str(run)], ["train", "--resume", str(run), "--epochs", "3"]):
        user_error(cli(argv), match)


def test_lost_last_pt_resumes_from_best_and_keeps_later_records(cli, run):
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    state["epoch"], state["step"], state["history"] = 1, 4, state["history"][:1]  # best.pt of epoch 1
    save_checkpoint(run / "checkpoints" / "best.pt", state)
    (run / "checkpoints" / "last.pt").unlink()
    lines = (run / "metrics.jsonl").read_text()
    result = cli(["train", "--resume", str(run), "--epochs", "2"])
    assert result.code == 0, result.err
    assert "best.pt: last.pt is missing" in result.err and "superseded-1" in result.err
    assert (run / "metrics.jsonl.superseded-1").read_text() == lines  # nothing rewritten away
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "epoch"] == [1, 2]


# --- 2. never write through what is not ours --------------------------------------------------


@pytest.mark.parametrize("name", some_fast([".lock", "metrics.jsonl", "config.toml", "checkpoints/last.pt"],
                                           (".lock", "metrics.jsonl")))
def test_symlinks_at_our_names_are_not_written_through(cli, run, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = run / name
    target.unlink(missing_ok=True)
    target.symlink_to(victim)
    result = cli(["train", "--resume", str(run), "--epochs", "3"])
    assert victim.read_text() == "precious\n"
    if name == ".lock":
        assert result.code == 2 and "symbolic link" in result.err
    elif name in ("checkpoints/last.pt", "config.toml"):  # read through, refused: not ours
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    else:
        assert result.code == 0, result.err
        assert not target.is_symlink()  # replaced by our file, the link's target untouched


@pytest.mark.parametrize("contents", [
    {"config.toml": "lr = 1\n", "metrics.jsonl": "{}\n", ".draft.tmp": "draft"},
    {"notes.txt": "mine"}, {".config.toml.abc.tmp": "x"}, {"checkpoints/notes.txt": "mine"},
    {"metrics.jsonl": ""}, {".lock": "", "checkpoints/.last.pt.x.tmp": "mine"},
    {".config.toml.abcdefgh.tmp": "x", "tensorboard/events": "mine"},
])
def test_foreign_out_folders_are_refused_untouched(cli, user_error, tmp_path, contents):
    out = tmp_path / "mine"
    for name, text in contents.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = snapshot(out)
    user_error(cli(["train", "resnet20", "--out", str(out), "--iterations", "1"]), "not a cnnarch run folder")
    assert snapshot(out) == before


def test_out_that_is_a_file_or_holds_only_a_lock(cli, user_error, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    user_error(cli(["train", "resnet20", "--out", str(f)]), "not a folder")
    assert f.read_text() == "x"
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / ".lock").write_text("")
    result = cli(["train", "resnet20", "--data", "synthetic:1x8x8:4:64", "--batch-size", "16",
                  "--iterations", "1", "--out", str(tmp_path / "fresh"), "--quiet"])
    assert result.code == 0, result.err


# --- 3. full and read-only disks ---------------------------------------------------------------


@pytest.mark.parametrize("code", some_fast([errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT],
                                           (errno.ENOSPC,)))
@pytest.mark.parametrize("nth", some_fast([1, 2, 3, 4, 5, 8], (4, 5)))
def test_disk_errors_are_one_line_and_history_never_runs_ahead(cli, user_error, tmp_path, monkeypatch,
                                                             code, nth):
    """The nth fsync of the run fails (config, metrics, checkpoints of epoch 1 or 2)."""
    import cnnarch.train.checkpoint as ck
    import cnnarch.train.logging as lg

    calls = {"n": 0}
    real = os.fsync

    def failing(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return real(fd)
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(ck.os, "fsync", failing)
    monkeypatch.setattr(lg.os, "fsync", failing)
    out = tmp_path / "run"
    result = cli(["train", "resnet20", "--data", "synthetic:1x8x8:4:64", "--batch-size", "16",
                  "--epochs", "3", "--out", str(out), "--quiet", "--no-val-split"])
    line = user_error(result, os.strerror(code))
    assert str(out) in line
    assert not list(out.rglob("*.tmp"))  # our temporaries are gone
    metrics = out / "metrics.jsonl"
    epochs = [r["epoch"] for r in read_metrics(metrics) if r["type"] == "epoch"] if metrics.exists() else []
    last = out / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)["epoch"] if last.exists() else 0
    assert not epochs or max(epochs) <= saved  # no epoch line without its checkpoint


def test_storage_error_is_a_user_error_naming_the_path(tmp_path, monkeypatch):
    from cnnarch.train.checkpoint import StorageError, atomic_write_text

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tempfile.mkstemp", full)
    with pytest.raises(StorageError, match=f"cannot write {tmp_path / 'x.txt'}: No space left"):
        atomic_write_text(tmp_path / "x.txt", "hello")
    assert isinstance(StorageError("x"), UserError)


def test_interrupted_write_leaves_no_temporary(tmp_path):
    from cnnarch.train.checkpoint import atomic_write_bytes

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "out.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_zip_members_claiming_more_than_the_file_are_refused(tmp_path, run):
    path = run / "checkpoints" / "last.pt"
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last central-directory entry: claim 3 GiB
    data[at + 24:at + 28] = (3 << 30).to_bytes(4, "little")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(bytes(data))
    with pytest.raises(UserError, match="claim"):
        load_checkpoint(evil)


def test_tensor_sizes_survive_the_round_trip(run):
    assert all(isinstance(v, torch.Tensor) for v in load_checkpoint(run)["model"].values())
