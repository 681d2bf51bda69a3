"""Run ``cnnarch`` (``cnnarch.__main__.main``, then ``end_process``, as the console script does)
in a process that kills itself at a chosen moment.

Used by the crash/resume and distributed fault tests as::

    CNNARCH_FAULT=SPEC python tests/reliability/_driver.py train ...

SPEC is ``EVENT:N`` (fire at the N-th occurrence of EVENT in this process) or
``timer:SECONDS``. At the chosen moment the process sends itself SIGKILL: no ``finally``
block, no flush, no atexit handler runs, exactly as when the OOM killer or a power loss
ends a run. The production code is not changed; the events are observed by wrapping the
functions it calls:

- ``step:N``                   right after the N-th optimizer step
- ``save-mid:N``               the N-th checkpoint write, after half of its bytes reached the
                               temporary file (fsync'ed), before the rename
- ``replace-before:NAME:N``    just before the N-th ``os.replace`` onto a file called NAME
                               (last.pt, best.pt, metrics.jsonl, config.toml)
- ``replace-after:NAME:N``     just after it (before the folder is fsync'ed)
- ``metrics-before:N``         before the N-th metrics.jsonl line is written
- ``metrics-after:N``          after it was written and fsync'ed
- ``eval:N``                   at the end of the N-th evaluation (before its result is used)
- ``tb:N``                     at the N-th TensorBoard write
- ``timer:S``                  S seconds after this process started
- ``signal-at:SIG:MOD:FUNC:N``  send SIG (INT, TERM) to this process as the N-th call of
                               ``MOD.FUNC`` begins (the function then runs): Ctrl-C or a
                               ``kill`` at a chosen moment of any command
- ``signal-on-import:SIG:MOD``  send SIG as the import of module MOD begins (start-up)
- ``oserror:ERRNO:N``           the N-th ``os.fsync`` of a regular file fails with ERRNO
                               (ENOSPC, EROFS, ...): a full or read-only disk at a chosen write
- ``pause:step:N:FILE``        after the N-th step, create FILE and sleep (never returns)
- ``killpg:SIG:N``             after the N-th step, send SIG (INT, TERM) to the process group
                               a terminal's Ctrl-C reaches: under torchrun the agent's (the
                               parent's; it forwards the signal to each rank, which runs in
                               a session of its own), else this process's own

``CNNARCH_FAULT_RANK=R`` arms the fault only in the process whose ``RANK`` is R (torchrun).
The exit status is the CLI's; a fired fault shows as -9 (SIGKILL) to the parent. With
``CNNARCH_EXIT_DIR=DIR`` the CLI's exit code is also written to ``DIR/rankR.exit``.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # pragma: no cover - SIGKILL cannot be caught


def _arm(spec: str) -> None:
    parts = spec.split(":")
    event = parts[0]
    if event == "timer":
        t = threading.Timer(float(parts[1]), _die)
        t.daemon = True
        t.start()
        return

    counts: dict[str, int] = {}
    if event == "signal-on-import":
        _signal_on_import(getattr(signal, "SIG" + parts[1]), parts[2])
        return
    if event == "oserror":
        import errno
        import stat

        code, n = getattr(errno, parts[1]), int(parts[2])
        real_fsync = os.fsync

        def fsync(fd):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                counts["fsync"] = counts.get("fsync", 0) + 1
                if counts["fsync"] == n:
                    raise OSError(code, os.strerror(code))
            return real_fsync(fd)

        os.fsync = fsync
        return
    if event == "signal-at":
        import importlib

        sig, module, name, n = getattr(signal, "SIG" + parts[1]), parts[2], parts[3], int(parts[4])
        owner = importlib.import_module(module)
        real = getattr(owner, name)

        def wrapped(*a, **k):
            counts[name] = counts.get(name, 0) + 1
            if counts[name] == n:
                os.kill(os.getpid(), sig)
            return real(*a, **k)

        setattr(owner, name, wrapped)
        return

    def hit(key: str, n: int) -> bool:
        counts[key] = counts.get(key, 0) + 1
        return counts[key] == n

    if event in ("step", "pause", "killpg"):
        import torch

        if event == "pause":
            n, marker = int(parts[2]), parts[3]
        elif event == "killpg":
            n, marker = int(parts[2]), None
            group_signal = getattr(signal, "SIG" + parts[1])
        else:
            n, marker = int(parts[1]), None
        from cnnarch.train.optim import FusedSGD

        for cls in (torch.optim.SGD, FusedSGD, torch.optim.AdamW):
            original = cls.step

            def step(self, *a, _original=original, _cls=cls, **k):
                out = _original(self, *a, **k)
                if type(self) is _cls and hit("step", n):  # FusedSGD's fallback is SGD.step
                    if event == "killpg":
                        launcher = os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else 0
                        os.killpg(os.getpgid(launcher), group_signal)
                        return out
                    if marker is None:
                        _die()
                    with open(marker, "w") as f:
                        f.write(str(os.getpid()))
                    while True:
                        time.sleep(1)
                return out

            cls.step = step
    elif event == "save-mid":
        from cnnarch.train import checkpoint

        n = int(parts[1])
        real_atomic = checkpoint.atomic_write_bytes

        def atomic(path, write):
            if not os.fspath(path).endswith(".pt") or not hit("save", n):
                return real_atomic(path, write)

            def half(f):  # the checkpoint's bytes, half of them on disk, then the kill
                buf = io.BytesIO()
                write(buf)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                _die()

            return real_atomic(path, half)

        checkpoint.atomic_write_bytes = atomic
    elif event in ("replace-before", "replace-after"):
        name, n = parts[1], int(parts[2])
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            mine = os.path.basename(os.fspath(dst)) == name and hit("replace", n)
            if mine and event == "replace-before":
                _die()
            out = real_replace(src, dst, *a, **k)
            if mine:
                _die()
            return out

        os.replace = replace
    elif event in ("metrics-before", "metrics-after"):
        from cnnarch.train import logging as train_logging

        n = int(parts[1])
        real_write = train_logging.MetricsFile.write

        def write(self, record):
            mine = hit("metrics", n)
            if mine and event == "metrics-before":
                _die()
            real_write(self, record)
            if mine:
                _die()

        train_logging.MetricsFile.write = write
    elif event == "eval":
        from cnnarch.train import loop

        n = int(parts[1])
        real_evaluate = loop.evaluate

        def evaluate(*a, **k):
            out = real_evaluate(*a, **k)
            if hit("eval", n):
                _die()
            return out

        loop.evaluate = evaluate
    elif event == "tb":
        from cnnarch.train import logging as train_logging

        n = int(parts[1])
        real_scalars = train_logging.TensorBoard.scalars

        def scalars(self, *a, **k):
            if hit("tb", n):
                _die()
            return real_scalars(self, *a, **k)

        train_logging.TensorBoard.scalars = scalars
    else:
        raise SystemExit(f"_driver.py: unknown fault {spec!r}")


def _signal_on_import(sig: int, module: str) -> None:
    """A meta-path finder that sends ``sig`` once, when ``module`` starts to be imported."""
    import importlib.abc

    class Trigger(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname == module:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), sig)
            return None

    sys.meta_path.insert(0, Trigger())


def serve() -> int:
    """Zygote mode (``_driver.py --zygote``): import torch and cnnarch once, then for each
    JSON request line ``{"argv": [...], "fault": SPEC, "log": PATH}`` on stdin fork a child
    that arms the fault and runs the CLI with stdout/stderr in PATH; answer ``{"rc": N}``
    (-9 when the child was SIGKILLed). Saves the ~2 s import and first-call warm-up per
    process; the child is a real process and dies by a real SIGKILL. With
    ``CNNARCH_ZYGOTE_WARMUP=DIR`` one tiny single-threaded run warms the kernels first
    (checked: no thread is left running when the zygote forks)."""
    import json

    import torch  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401
    import tqdm
    import tqdm.auto  # noqa: F401

    tqdm.tqdm.monitor_interval = 0  # no tqdm monitor thread in the zygote

    import cnnarch.cli
    import cnnarch.data
    import cnnarch.models
    import cnnarch.train  # noqa: F401

    warmup = os.environ.get("CNNARCH_ZYGOTE_WARMUP")  # a run folder: train once, warm kernels
    if warmup:
        import contextlib
        import threading

        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), \
                contextlib.redirect_stdout(null):
            cnnarch.cli.main(["train", "resnet20", "--data", "synthetic:1x8x8:4:64", "--batch-size",
                              "16", "--epochs", "1", "--device", "cpu", "--quiet", "--out", warmup])
        assert threading.active_count() == 1, threading.enumerate()  # fork needs one thread

    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # child
            code = 70
            try:
                fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.stdin.close()
                if req.get("fault"):
                    _arm(req["fault"])
                code = cnnarch.cli.main(req["argv"])
            except BaseException:  # noqa: BLE001 - report and exit with a distinct code
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 70)
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()
    return 0


def main() -> int:
    if sys.argv[1:] == ["--zygote"]:
        return serve()
    spec = os.environ.get("CNNARCH_FAULT", "")
    rank = os.environ.get("CNNARCH_FAULT_RANK")
    if spec and (rank is None or rank == os.environ.get("RANK", "0")):
        _arm(spec)
    from cnnarch.__main__ import main as cli_main  # what the console script runs

    code = cli_main(sys.argv[1:])
    exits = os.environ.get("CNNARCH_EXIT_DIR")  # torchrun does not pass a signalled rank's code on
    if exits:
        with open(os.path.join(exits, f"rank{os.environ.get('RANK', '0')}.exit"), "w") as f:
            f.write(str(code))
    return code


if __name__ == "__main__":
    from cnnarch.__main__ import end_process  # how the console script exits

    end_process(main())
