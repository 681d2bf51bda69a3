"""``python -m cnnarch`` and the ``cnnarch`` console script (``run``).

``main`` loads the command line inside ``cnnarch.signals.interruptible`` (standard library
only), so a Ctrl-C or SIGTERM in the moment the CLI's modules are being imported is one line
and 128 + the signal too; from then on ``cnnarch.cli.main`` handles signals. ``run`` calls
``main`` and ends the process with its code through ``end_process``.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from .signals import Interrupted, interruptible


def main(argv: list[str] | None = None) -> int:
    try:
        with interruptible("stopped while starting"):
            from .cli import main as cli_main
    except Interrupted as exc:
        print(f"cnnarch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return cli_main(argv)


def end_process(code: int) -> NoReturn:
    """Exit with ``code``. A process that trained under torchrun skips the interpreter's
    finalization (``os._exit`` after flushing stdout and stderr): DistributedDataParallel keeps
    its process group alive to the end, and a gloo worker thread that is still releasing the
    tensors of the last collective then needs the GIL of an interpreter being torn down, which
    aborts the process (SIGABRT, "terminate called without an active exception") after a
    successful run. Every file of the run is closed by then (``cnnarch.train.loop.train``)."""
    distributed = sys.modules.get("cnnarch.train.distributed")
    if distributed is not None and distributed.joined_group():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing left to write
                pass
        os._exit(code)
    sys.exit(code)


def run() -> NoReturn:
    """The console script: ``main``, then ``end_process`` with its exit code."""
    end_process(main())


if __name__ == "__main__":
    run()
