"""Shared helpers for the adversarial reliability suite (see docs/reliability.md); conftest.py
turns them into fixtures, test modules load this file with ``load_helpers()``.

Fixtures:
- ``cli(argv)`` runs ``cnnarch.cli.main`` in-process -> ``CliResult(code, out, err)`` and
  fails the test on any exception other than a clean exit;
- ``user_error(result)`` asserts "exit 2 and a one-line message, no traceback";
- ``tiny_run``: a trained run folder (session-wide, read-only for the tests);
- ``evil_pickle``: builds files whose unpickling would create a marker file;
- ``run_driver``: runs ``_driver.py`` (the CLI with a self-inflicted SIGKILL) in a subprocess;
- ``check_run_folder``: every file a run folder holds is whole (checkpoints load, metrics
  lines parse, config.toml reloads);
- ``reliability_log``: counts (cases tried, kill points) printed at the end of the session.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DRIVER = HERE / "_driver.py"

# The tiny training run used by the crash tests: 4 steps per epoch, 3 epochs, ~1 s of work.
TINY_ARGS = ["--data", "synthetic:1x8x8:4:64", "--batch-size", "16", "--epochs", "3",
             "--warmup-epochs", "0", "--device", "cpu", "--quiet", "--seed", "0"]
TIME_KEYS = ("time_s", "img_per_s")  # wall-clock fields: the only ones allowed to differ


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; a SystemExit becomes the exit code, any other exception fails."""

    def run(argv: list[str]) -> CliResult:
        capsys.readouterr()
        try:
            code = main_cli(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        captured = capsys.readouterr()
        return CliResult(int(code), captured.out, captured.err)

    return run


def main_cli(argv):
    from cnnarch.cli import main

    return main(list(argv))


def assert_user_error(result: CliResult, *needles: str) -> str:
    """Exit code 2, no traceback, and the error is one line (the last line of stderr)."""
    assert result.code == 2, f"exit {result.code}, expected 2; stderr: {result.err[-2000:]}"
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    message = lines[-1]
    assert "error" in message, message
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in {message!r}"
    return message


@pytest.fixture
def user_error():
    return assert_user_error


# --- malicious pickles ----------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker`` (proof that code ran)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@dataclass
class EvilFiles:
    marker: Path

    def payload(self) -> Payload:
        return Payload(self.marker)

    def checkpoint_like(self, path: Path, base: dict | None = None, legacy: bool = False) -> Path:
        """A file that looks like a cnnarch checkpoint (format tag, meta...) plus the payload."""
        state = dict(base or {"format": "cnnarch-checkpoint", "version": 1})
        state["meta"] = dict(state.get("meta", {}), note=self.payload())
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        return path

    def state_dict_like(self, path: Path, base: dict) -> Path:
        state = dict(base)
        state["extra"] = self.payload()
        torch.save(state, path)
        return path

    def raw_pickle(self, path: Path) -> Path:
        import pickle

        path.write_bytes(pickle.dumps({"model": self.payload()}))
        return path

    def assert_not_run(self):
        assert not self.marker.exists(), "the pickle's code RAN (marker file created)"


@pytest.fixture
def evil_pickle(tmp_path):
    return EvilFiles(tmp_path / "MARKER-code-ran")


# --- runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished 3-epoch run folder (tiny synthetic data, resnet20). Do not modify it."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    from cnnarch.cli import main

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "resnet20", *TINY_ARGS, "--out", str(run)])
    finally:
        torch.set_num_threads(old)
    assert code == 0
    return run


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    def make(name: str = "run") -> Path:
        dest = tmp_path / name
        shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns(".lock"))
        return dest

    return make


def driver_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("CNNARCH_FAULT", None)
    env.pop("CNNARCH_FAULT_RANK", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def run_driver():
    """Run the CLI under _driver.py in a subprocess -> CompletedProcess (returncode -9 = killed)."""

    def run(argv, fault: str = "", timeout: float = 120, cwd=None, **env):
        extra = dict(env)
        if fault:
            extra["CNNARCH_FAULT"] = fault
        return subprocess.run([sys.executable, str(DRIVER), *map(str, argv)], cwd=cwd,
                              env=driver_env(**extra), capture_output=True, text=True,
                              timeout=timeout)

    return run


class Zygote:
    """A pre-imported ``_driver.py --zygote`` process that forks one child per CLI run."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        env = driver_env(CNNARCH_ZYGOTE_WARMUP=self.logdir / "warmup-run")
        self.proc = subprocess.Popen([sys.executable, str(DRIVER), "--zygote"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, argv, fault: str = "") -> tuple[int, str]:
        """-> (exit status, -9 when killed; the child's stdout+stderr)."""
        self.n += 1
        log = self.logdir / f"{self.n:03d}.log"
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "fault": fault,
                                          "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died")
        return json.loads(line)["rc"], log.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def check_run_folder(run: Path) -> dict:
    """Everything on disk is whole. Returns what was found (epoch of last.pt, metrics lines)."""
    from cnnarch.train.checkpoint import load_checkpoint
    from cnnarch.train.config import load_config

    found: dict = {"last_epoch": None, "metrics_lines": 0}
    for name in ("last.pt", "best.pt"):
        p = run / "checkpoints" / name
        if p.exists():
            state = load_checkpoint(p)  # raises on a torn file
            assert state["format"] == "cnnarch-checkpoint"
            if name == "last.pt":
                found["last_epoch"] = int(state["epoch"])
                assert len(state["history"]) == state["epoch"]
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        text = metrics.read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n"), f"torn last line in {metrics}: {text[-200:]!r}"
        for line in text.splitlines():
            json.loads(line)  # raises on a torn line
            found["metrics_lines"] += 1
    if (run / "config.toml").exists():
        load_config(run / "config.toml")
    return found


@pytest.fixture
def check_run():
    return check_run_folder


def metrics_without_time(path: Path) -> list[dict]:
    from cnnarch.train.logging import read_metrics

    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in read_metrics(path)]


def history_without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in history]


@pytest.fixture
def same_run():
    """Assert two finished run folders hold bitwise the same weights, optimizer and metrics."""

    def check(a: Path, b: Path) -> None:
        from cnnarch.train.checkpoint import load_checkpoint

        sa, sb = load_checkpoint(a), load_checkpoint(b)
        assert sa["epoch"] == sb["epoch"] and sa["step"] == sb["step"]
        for key in sa["model"]:
            assert torch.equal(sa["model"][key], sb["model"][key]), f"weights differ: {key}"
        for (ka, va), (kb, vb) in zip(sorted(sa["optimizer"]["state"].items()),
                                      sorted(sb["optimizer"]["state"].items()), strict=True):
            assert ka == kb
            for name in va:
                assert torch.equal(va[name], vb[name]), f"optimizer state differs: {ka}.{name}"
        assert history_without_time(sa["history"]) == history_without_time(sb["history"])
        assert sa["best_acc"] == sb["best_acc"]
        ma = metrics_without_time(a / "metrics.jsonl")
        mb = metrics_without_time(b / "metrics.jsonl")
        assert ma == mb, "metrics.jsonl differs"

    return check


# --- the session's numbers ------------------------------------------------------------------


@pytest.fixture(scope="session")
def reliability_log(request):
    log = request.config.stash.get(_LOG_KEY, None)
    if log is None:
        log = {}
        request.config.stash[_LOG_KEY] = log
    return log


_LOG_KEY = pytest.StashKey[dict]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    log = config.stash.get(_LOG_KEY, None)
    if not log:
        return
    terminalreporter.section("reliability: cases tried")
    for key in sorted(log):
        terminalreporter.write_line(f"{key}: {log[key]}")
    out = os.environ.get("CNNARCH_RELIABILITY_JSON")
    if out:
        Path(out).write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread in these tests: on two shared cores, two spinning OpenMP threads
    make tiny runs 10-50x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
