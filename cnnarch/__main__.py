"""``python -m cnnarch`` and the ``cnnarch`` console script.

``main`` loads the command line inside ``cnnarch.signals.interruptible`` (standard library
only), so a Ctrl-C or SIGTERM in the moment the CLI's modules are being imported is one line
and 128 + the signal too; from then on ``cnnarch.cli.main`` handles signals.
"""

from __future__ import annotations

import sys

from .signals import Interrupted, interruptible


def main(argv: list[str] | None = None) -> int:
    try:
        with interruptible("stopped while starting"):
            from .cli import main as cli_main
    except Interrupted as exc:
        print(f"cnnarch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
