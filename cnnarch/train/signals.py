"""SIGINT and SIGTERM during training: the same for both, stop at a safe point.

Inside ``StopRequest()`` the first SIGINT (Ctrl-C) or SIGTERM only sets ``requested``;
the loop checks it after every optimizer step and stops there, keeping the last
checkpoint (the epoch in progress is not saved half-done) and raising ``Interrupted``:
one line saying what was kept and how to continue (``--resume``), exit code 130 for SIGINT
and 143 for SIGTERM (128 + the signal number, as a shell reports them). A second signal
stops at once (``KeyboardInterrupt``). DataLoader workers ignore SIGINT
(data/imagefolder.py), so Ctrl-C to the process group reaches only this decision.

Handlers can only be installed from the main thread; elsewhere (and under torchrun, whose
agent stops every rank itself) ``StopRequest`` leaves the signals alone.
"""

from __future__ import annotations

import signal
import threading

from ..errors import CnnarchError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(CnnarchError):
    """Training stopped on a signal at a safe point; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """Context manager: ``requested`` is the first signal's number (0 = none)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = 0
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second signal: stop now
            self.__exit__()
            raise KeyboardInterrupt
        self.requested = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
