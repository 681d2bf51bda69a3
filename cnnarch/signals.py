"""SIGINT and SIGTERM: the same for both, everywhere: stop at a safe point, or defer.

Training: inside ``StopRequest()`` the first SIGINT (Ctrl-C) or SIGTERM only records the
signal; the loop reads ``requested`` after every optimizer step and stops there, keeping the
last checkpoint (the epoch in progress is not saved half-done) and raising ``Interrupted``:
one line saying what was kept and how to continue (``--resume``), exit code 130 for SIGINT
and 143 for SIGTERM (128 + the signal number, as a shell reports them). A second signal
stops at once (``KeyboardInterrupt``). DataLoader workers run in process groups of their own
(data/imagefolder.py), so Ctrl-C to the process group reaches only this decision.

Under torchrun (a process group of more than one rank), every rank must stop at the same
step, or the others would wait in the next all-reduce for a rank that left. ``requested``
is then the maximum over the ranks (one all-reduce of a 1-element tensor per read, over a
gloo group, so it never syncs a GPU), and since every rank reads it at the same points of
the loop, all ranks see the signal at the same step. torchrun's agent forwards the signal
it received to every rank, so a rank sees it twice: a repeat does not stop at once there
(the agent kills ranks that outlive its own grace period). Only rank 0's ``Interrupted``
carries the message; the others name their rank and defer to it.

Outside training, ``deferred()`` holds SIGINT/SIGTERM back while a file is being written
(``train/checkpoint.py``'s atomic writer uses it), then delivers them: a signal can never
leave a half-written file or a temporary behind, whatever handler the command has. Every
command of the CLI runs inside ``interruptible`` (cli.py ``main``), its parsing included, so a
signal anywhere else is one line too.

Handlers can only be installed from the main thread; elsewhere ``StopRequest`` and
``deferred`` leave the signals alone, as they do in a worker process its parent stops
(``leave_to_parent``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from .errors import CnnarchError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(CnnarchError):
    """Stopped on a signal at a safe point; ``exit_code`` is 128 + the signal.

    Under torchrun, the ranks other than 0 say only that they stopped with rank 0 (whose
    line says what was kept), so the job prints one full line, not one per rank."""

    def __init__(self, message: str, signum: int):
        rank, world = _rank_and_world()
        if rank:
            message = (f"rank {rank} of {world} stopped with rank 0 "
                       f"({signal.Signals(signum).name}; rank 0 says what was kept)")
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def _rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the process group; (0, 1) without one, torch not imported included
    (a signal can arrive while ``import torch`` is still under way)."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_LEFT_TO_PARENT = False  # set in worker processes their parent stops (leave_to_parent)


def _main_thread() -> bool:
    """Whether handlers may be installed here: the main thread, of a process that is not a
    worker its parent stops."""
    return threading.current_thread() is threading.main_thread() and not _LEFT_TO_PARENT


def leave_to_parent() -> None:
    """For a worker process whose parent decides when it stops (``reproduce``'s seed
    workers): SIGINT is ignored (a Ctrl-C to the process group is the parent's to act on) and
    SIGTERM keeps its default, so the parent's ``terminate()`` ends the worker at once;
    ``StopRequest``, ``interruptible`` and ``deferred`` leave both alone here (a worker that
    turned the parent's SIGTERM into a stop at its next step would outlive the pool's
    shutdown; its files stay whole anyway, as every write is an atomic replace)."""
    global _LEFT_TO_PARENT
    _LEFT_TO_PARENT = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class StopRequest:
    """Context manager: ``requested`` is the first signal's number (0 = none); under
    torchrun, the largest over the ranks (a collective: every rank reads it equally often)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and _main_thread()
        self._signum = 0
        self._old: dict = {}
        self._group = None  # the process group the ranks agree over (None: one process)
        self._agreed = 0

    def _handle(self, signum, frame) -> None:
        if self._signum and self._group is None:  # the second signal: stop now
            self.__exit__()
            raise KeyboardInterrupt
        self._signum = self._signum or signum

    @property
    def requested(self) -> int:
        if self._group is None:
            return self._signum
        if not self._agreed:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([self._signum], dtype=torch.int64)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
            self._agreed = int(flag.item())
        return self._agreed

    @property
    def name(self) -> str:
        signum = self.requested
        return signal.Signals(signum).name if signum else ""

    def __enter__(self) -> StopRequest:
        if self.enabled:
            self._group = _agreement_group()
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


def _agreement_group():
    """The group the ranks agree over: the default one when it is gloo, else a gloo group
    made for it (a CPU tensor cannot go through NCCL). None for a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    return dist.new_group(backend="gloo")


@contextlib.contextmanager
def deferred():
    """Hold SIGINT and SIGTERM back for the body; deliver the first one afterwards (to the
    handler that was there before, be it Python's KeyboardInterrupt, the default exit or a
    ``StopRequest``). A no-op outside the main thread."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in SIGNALS}
    old = {s: signal.SIG_DFL if h is None else h for s, h in old.items()}  # None: set outside Python
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


class SignalReceived(KeyboardInterrupt):
    """Raised by ``interruptible``'s handler: SIGINT or SIGTERM, stopping the work at once.

    A KeyboardInterrupt, so that no ``except Exception`` on the way (a library's fallback
    path, say) mistakes it for a failure of the work."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interruptible(what: str):
    """For work that has no safe point to wait for (an export, an evaluation, a report):
    SIGINT and SIGTERM stop the body at once, and come out as one ``Interrupted`` line,
    ``interrupted by SIGTERM: WHAT``, exit code 128 + the signal. Files are safe meanwhile:
    an atomic write holds the signal back until it is done (``deferred``), and ``with``
    blocks clean up as the exception passes. Outside the main thread only SIGINT (Python's
    own KeyboardInterrupt) is turned into the line."""

    def handler(signum, frame):
        raise SignalReceived(signum)

    old = {s: signal.signal(s, handler) for s in SIGNALS} if _main_thread() else {}
    try:
        yield
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}: {what}", signum) from None
    finally:
        for s, h in old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
