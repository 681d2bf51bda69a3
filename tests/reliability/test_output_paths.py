"""Never write through what is not ours, at each output path a command writes: a symlink
(to a user's file, to a folder), a FIFO or a folder where our file goes.

Train's own names (``.lock``, ``metrics.jsonl``, ``config.toml``, ``checkpoints/last.pt``,
``tensorboard/``) have their symlink cases in test_run_folder_trust.py and
test_tensorboard_faults.py; here: the ONNX file, the experiment's report files and figures,
and the special files (FIFOs, folders) that would make a careless writer hang or clobber.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_h = sys.modules["cnnarch_reliability_helpers"]
VICTIM = "the user's own file\n"


def victim(tmp_path: Path, name: str = "victim.txt") -> Path:
    p = tmp_path / name
    p.write_text(VICTIM)
    return p


def untouched(p: Path) -> bool:
    return p.read_text() == VICTIM


# --- export --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    from cnnarch.models import create_model

    return create_model("resnet20", num_classes=4, in_chans=1).eval()


def test_symlink_at_the_onnx_file_is_replaced_not_written_through(tmp_path, tiny_model):
    from cnnarch.inference.onnx_export import export_onnx, read_metadata

    target = victim(tmp_path)
    onnx = tmp_path / "model.onnx"
    onnx.symlink_to(target)
    export_onnx(tiny_model, onnx, (1, 8, 8))
    assert untouched(target) and not onnx.is_symlink()
    assert read_metadata(onnx)["input_size"] == [1, 8, 8]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_onnx_path_that_is_a_link_to_a_folder_is_refused(cli, user_error, tmp_path, tiny_run):
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "model.onnx").symlink_to(folder)
    user_error(cli(["export", str(tiny_run), "--onnx", str(tmp_path / "model.onnx")]), "directory")
    assert list(folder.iterdir()) == []


# --- train: special files at our names ---------------------------------------------------------


def _train_argv(out: Path) -> list[str]:
    return ["train", "resnet20", *_h.TINY_ARGS, "--epochs", "1", "--out", str(out)]


def _in_subprocess(argv, timeout=120) -> subprocess.CompletedProcess:
    """A case that would hang on a FIFO runs in its own process, with a time limit."""
    return subprocess.run([sys.executable, str(_h.DRIVER), *map(str, argv)], env=_h.driver_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", ["config.toml", ".lock", "metrics.jsonl"])
def test_fifo_at_our_name_in_out_neither_hangs_nor_is_written(tmp_path, name):
    """A FIFO opened for reading or writing blocks until the other end opens: a writer that
    opened it would hang for ever, or feed whoever reads it."""
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / name)
    try:
        proc = _in_subprocess(_train_argv(out))
    except subprocess.TimeoutExpired:
        pytest.fail(f"train hung on a FIFO at {name}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "error" in last and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (out / name).is_fifo() and sorted(p.name for p in out.iterdir()) == [name]


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.toml"])
def test_folder_at_our_file_name_in_a_run_is_one_line(cli, user_error, tmp_path, tiny_run, name):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    (run / name).unlink()
    (run / name).mkdir()
    (run / name / "keep.txt").write_text(VICTIM)
    user_error(cli(["train", "--resume", str(run), "--epochs", "4"]), name)
    assert untouched(run / name / "keep.txt")


# --- experiment: report files and figures -----------------------------------------------------

REPORT_FILES = ["results.json", "report.md", "report.html", "g1_cost.png", "g2_branches.png",
                "g3_naive.png", "g4_bottleneck.png"]


@pytest.mark.slow  # one real inception-cost experiment: ~30-50 s on 2 shared cores
def test_symlinks_at_every_report_file_are_replaced_not_written_through(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    victims = {}
    for name in REPORT_FILES:
        victims[name] = victim(tmp_path, f"victim-{name}")
        (out / name).symlink_to(victims[name])
    proc = _in_subprocess(["experiment", "inception-cost", "--out", out], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in REPORT_FILES:
        assert untouched(victims[name]), f"wrote through the link at {name}"
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []
