"""``python -m cnnarch`` and the ``cnnarch`` console script.

``main`` loads the command line inside a handler of its own, so a Ctrl-C or SIGTERM in the
moment the CLI's modules are being imported is one line and 128 + the signal too (from then
on ``cnnarch.cli.main`` handles signals). Only the standard library is used before that.
"""

from __future__ import annotations

import signal
import sys


class _Stopped(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise _Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    old = signal.signal(signal.SIGTERM, _stop)
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"cnnarch: error: interrupted by {signal.Signals(signum).name}: stopped while "
              "starting", file=sys.stderr)
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, old)
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
