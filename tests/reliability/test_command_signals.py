"""SIGINT and SIGTERM during the commands that are not training: ``export`` (the exporter,
the onnxruntime verification, the file's write), ``eval``, ``predict``, ``experiment`` (its
report files), and at start-up (as ``import torch`` begins) for every command.

Each case runs the real CLI in a process of its own (``_driver.py``), which sends itself the
signal at the chosen moment (``signal-at:SIG:MODULE:FUNCTION:N``, ``signal-on-import``).
What must hold: exit 128 + the signal, at most one line on stderr and no traceback, no
partial, 0-byte or temporary file left (the ONNX file, its ``.tmp``, the exporter's scratch
folder in TMPDIR, report files), and no "verified" for a file that was not written.

The console script's entry point (``cnnarch.__main__.main``) imports ``cnnarch.cli`` inside
a handler of its own, so a signal in that moment is one line too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

_h = sys.modules["cnnarch_reliability_helpers"]

def drive(argv, fault: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    tmp = cwd / "tmpdir"
    tmp.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(_h.DRIVER), *map(str, argv)], cwd=cwd,
                          env=_h.driver_env(CNNARCH_FAULT=fault, TMPDIR=str(tmp)),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_exit(proc: subprocess.CompletedProcess, sig: int, progress: bool = False) -> str:
    """Exit 128 + sig, no traceback, one line saying so (``progress``: the last line, after
    the progress lines a command such as ``experiment`` prints as it goes)."""
    assert proc.returncode == 128 + sig, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("threads:")]
    if progress:
        lines = [line for line in lines if not line.startswith("[")][-1:] or lines[-1:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "interrupted" in lines[0], lines
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Our temporaries and the exporter's scratch folders under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith("cnnarch-onnx-"))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    run = tmp_path_factory.mktemp("sig") / "run"
    assert _h.main_cli(["train", "resnet20", *_h.TINY_ARGS, "--epochs", "1", "--out", str(run)]) == 0
    return run


# --- export ---------------------------------------------------------------------------------

EXPORT_STAGES = {  # where the signal arrives -> is the file there afterwards (whole)?
    "exporter": ("cnnarch.inference.onnx_export:_serialised", False),
    "verification": ("cnnarch.inference.onnx_export:_compare_with_runtime", False),
    "write": ("cnnarch.train.checkpoint:_write_replace", True),
}
EXPORT_CASES = [(sig, stage) for sig in (signal.SIGINT, signal.SIGTERM) for stage in EXPORT_STAGES]
FAST_EXPORT = {(signal.SIGTERM, "exporter")}  # the rest in `make test-all` (10-35 s each)


@pytest.mark.parametrize("sig, stage", [
    c if c in FAST_EXPORT else pytest.param(*c, marks=pytest.mark.slow) for c in EXPORT_CASES],
    ids=lambda v: getattr(v, "name", v))
def test_export_signal_is_one_line_and_leaves_no_partial_file(tmp_path, run_folder, sig, stage):
    where, written = EXPORT_STAGES[stage]
    onnx = tmp_path / "model.onnx"
    proc = drive(["export", run_folder, "--onnx", onnx],
                 f"signal-at:{signal.Signals(sig).name[3:]}:{where}:1", tmp_path)
    line = assert_one_line_exit(proc, sig)
    assert signal.Signals(sig).name in line
    assert "verified" not in proc.stdout
    assert leftovers(tmp_path) == []
    if written:  # the signal waited for the write: the file is whole and loads
        from cnnarch.inference.onnx_export import read_metadata

        assert "written whole and verified" in line
        assert read_metadata(onnx)["input_size"] == [1, 8, 8]
    else:
        assert not onnx.exists() and "nothing was written" in line


# --- eval, predict -----------------------------------------------------------------------------


def _eval(run_folder, tmp_path):
    return ["eval", run_folder]


def _predict(run_folder, tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 128).save(image)
    return ["predict", run_folder, image]


READERS = {"eval": (_eval, "cnnarch.train:evaluate"),
           "predict": (_predict, "cnnarch.inference.predict:predict_files")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("command", list(READERS))
def test_eval_and_predict_signal_is_one_line(tmp_path, run_folder, command, sig):
    argv, where = READERS[command]
    proc = drive(argv(run_folder, tmp_path), f"signal-at:{signal.Signals(sig).name[3:]}:{where}:1", tmp_path)
    assert_one_line_exit(proc, sig)
    assert proc.stdout.strip() == ""  # no result printed for an evaluation that did not finish


# --- experiment: report files never half-written ---------------------------------------------


@pytest.mark.slow  # the inception-cost experiment takes ~30-50 s on 2 shared cores
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("nth", [1, 5])  # a figure; results.json / a report page
def test_experiment_signal_during_a_report_write_leaves_whole_files(tmp_path, sig, nth):
    out = tmp_path / "report"
    proc = drive(["experiment", "inception-cost", "--out", out],
                 f"signal-at:{signal.Signals(sig).name[3:]}:cnnarch.train.checkpoint:_write_replace:{nth}",
                 tmp_path)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert leftovers(tmp_path) == [] and len(files) == nth, files  # the write under way finished
    for p in files:
        assert p.stat().st_size > 0
        if p.suffix == ".json":
            json.loads(p.read_text())
        if p.suffix == ".html":
            assert p.read_text().rstrip().endswith("</html>")
        if p.suffix == ".png":
            assert p.read_bytes().endswith(b"IEND\xaeB`\x82")
    assert_one_line_exit(proc, sig, progress=True)


# --- start-up ----------------------------------------------------------------------------------

STARTUP = {
    "train": ["train", "resnet20", *_h.TINY_ARGS, "--epochs", "1"],
    "eval": ["eval", "RUN"], "predict": ["predict", "RUN", "nothing.png"],
    "export": ["export", "RUN", "--onnx", "m.onnx"], "bench": ["bench", "resnet20", "--repeats", "1"],
    "summary": ["summary", "resnet20"], "experiment": ["experiment", "inception-cost", "--out", "rep"],
    "reproduce": ["reproduce", "--out", "rep"],
}


STARTUP_CASES = [
    (c, sig, "torch") for sig in (signal.SIGINT, signal.SIGTERM) for c in STARTUP] + [
    (c, sig, "cnnarch.cli") for sig in (signal.SIGINT, signal.SIGTERM) for c in ("train", "summary")]


@pytest.mark.parametrize("command, sig, module", STARTUP_CASES, ids=lambda v: getattr(v, "name", v))
def test_signal_at_start_up_is_one_line(tmp_path, run_folder, command, sig, module):
    argv = [str(run_folder) if a == "RUN" else a for a in STARTUP[command]]
    proc = drive(argv, f"signal-on-import:{signal.Signals(sig).name[3:]}:{module}", tmp_path, timeout=120)
    if module == "torch" and proc.returncode == 0:
        pytest.fail(f"{command} never imported torch (or swallowed the signal): {proc.stderr[-500:]}")
    assert_one_line_exit(proc, sig)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "rep").exists()
