"""ENOSPC / EROFS / EACCES / EDQUOT at each writer outside the run folder: the ONNX file
(at its fsync, at the temporary's creation, at the rename) and the experiment's report
files and figures (the first and a later write). One line naming the path, exit 2, no
temporary left, an earlier file at the target kept, "verified" never printed, and the
report files written before the failure whole.

(The run folder's writers, checkpoints, config, metrics and TensorBoard events, have
their own cases in test_run_folder_trust.py and test_tensorboard_faults.py.)
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys

import pytest

_h = sys.modules["cnnarch_reliability_helpers"]
CODES = [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT]


def _fail_fsync(code):
    real = os.fsync

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        return real(fd)

    return fsync


def _fail_mkstemp(code):
    def mkstemp(*a, **k):
        raise OSError(code, os.strerror(code))

    return mkstemp


def _fail_replace(code):
    real = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).endswith(".onnx"):
            raise OSError(code, os.strerror(code), str(src), None, str(dst))
        return real(src, dst, *a, **k)

    return replace


WHERE = {"fsync": ("os", "fsync", _fail_fsync), "mkstemp": ("tempfile", "mkstemp", _fail_mkstemp),
         "rename": ("os", "replace", _fail_replace)}
EXPORT_CASES = [(c, w) for c in CODES for w in WHERE]
FAST = {(errno.ENOSPC, "fsync"), (errno.EROFS, "rename")}  # an export each: ~15 s


@pytest.mark.parametrize("code, where", [
    c if c in FAST else pytest.param(*c, marks=pytest.mark.slow) for c in EXPORT_CASES],
    ids=lambda v: errno.errorcode.get(v, v))
def test_export_disk_errors_are_one_line_and_keep_the_old_file(cli, user_error, tiny_run, tmp_path,
                                                               monkeypatch, code, where):
    import cnnarch.inference.onnx_export as ox  # noqa: F401 - imported before the fault is armed
    import cnnarch.train.checkpoint as ck

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"an earlier export")
    module, name, make = WHERE[where]
    monkeypatch.setattr(getattr(ck, module), name, make(code))
    result = cli(["export", str(tiny_run), "--onnx", str(onnx)])
    monkeypatch.undo()
    user_error(result, os.strerror(code), str(onnx))
    assert "verified" not in result.out
    assert onnx.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.slow  # a real inception-cost experiment each: ~30-50 s on 2 shared cores
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=errno.errorcode.get)
@pytest.mark.parametrize("nth", [1, 5])  # a figure; a later report file
def test_experiment_disk_error_at_a_report_write(tmp_path, code, nth):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(_h.DRIVER), "experiment", "inception-cost", "--out", str(out)],
                          env=_h.driver_env(CNNARCH_FAULT=f"oserror:{errno.errorcode[code]}:{nth}"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert os.strerror(code) in last and str(out) in last, last
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert not [p for p in files if p.name.endswith(".tmp")]
    for p in files:  # the writes before the failing one are whole
        assert p.stat().st_size > 0
        if p.suffix == ".json":
            json.loads(p.read_text())
        if p.suffix == ".png":
            assert p.read_bytes().endswith(b"IEND\xaeB`\x82")
