"""The library's exceptions.

Every error cnnarch raises on purpose derives from :class:`CnnarchError`. :class:`UserError`
marks bad input (a flag, a file, a config, an argument of a public function): the CLI prints
it on one line and exits with code 2. Any other exception is a bug and keeps its traceback.
``UserError`` is also a ``ValueError``, so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations


class CnnarchError(Exception):
    """Base class of the errors cnnarch raises deliberately."""


class UserError(CnnarchError, ValueError):
    """Bad input from the user (a flag, a file, a config, an argument); never a bug in cnnarch."""


def printable(text: str) -> str:
    """``text`` with its control characters (a carriage return or an escape sequence in a
    user's argument) written as escapes, so that a message stays one line and prints as is."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def first_line(exc: BaseException) -> str:
    """The exception's message cut to its first line (for one-line error reports)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
