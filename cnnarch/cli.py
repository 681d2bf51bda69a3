"""The `cnnarch` command line: parse, call one function, print.

Each group of sub-commands is added by one ``_add_*`` function below. A user error
(``UserError``, ``ValueError``, a missing file) prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UserError

USER_ERRORS = (UserError, ValueError, TypeError, FileNotFoundError, IsADirectoryError,
               NotADirectoryError, PermissionError, FileExistsError)


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnarch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_model_commands(sub)
    _add_training_commands(sub)
    _add_experiment_commands(sub)
    _add_speed_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cnnarch {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnarch: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnnarch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _input_size(text: str) -> tuple[int, int, int]:
    """Parse C,H,W (argparse type)."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W integers, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers C,H,W, got {text!r}")
    return parts


# --- models, summary, inception-cost (issue 2) --------------------------------------------


def _add_model_commands(sub) -> None:
    pass


# --- train, eval (issue 3) -----------------------------------------------------------------


def _add_training_commands(sub) -> None:
    pass


# --- experiment, reproduce (issue 4) -------------------------------------------------------


def _add_experiment_commands(sub) -> None:
    pass


# --- bench, export, predict (issue 5) ------------------------------------------------------


def _add_speed_commands(sub) -> None:
    pass
