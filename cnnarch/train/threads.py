"""How many CPU threads a computing command uses: measured, not assumed.

On a machine where other processes hold cores, intra-op threads that wait for a core make
every step several times slower than one thread; on an idle machine more threads win.
``choose_threads()`` first reads the load average: with fewer than two cores left idle by
other processes it takes one thread without measuring (a multi-threaded probe step can
take seconds there). Otherwise it times a few small ResNet-20 training steps (8 x 8
inputs, batch 64, ~0.1-0.5 s in all) with one thread and with all of them, and keeps the
faster (the load average lags by about a minute; the timing sees a neighbour that has
just started).
``set_threads(requested)`` is what the CLI calls: ``--threads N`` sets N without measuring,
``None`` measures (once per process: later calls reuse the answer); either way it returns
the one line the command prints.
"""

from __future__ import annotations

import time

import torch

from ..errors import UserError

MAX_THREADS = 1024  # the largest --threads accepted
_measured: tuple[int, dict] | None = None  # (threads available, choose_threads' answer), once per process


def busy_cores() -> float | None:
    """Cores other processes keep busy: the 1-minute load average less this process (which
    is running while it asks); None where the OS has no load average."""
    import os

    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


def choose_threads(max_threads: int | None = None) -> dict:
    """Pick the faster of 1 and ``max_threads`` (default: torch's current count) intra-op
    threads by timing ResNet-20 steps; sets torch's thread count and returns
    ``{"threads": n, "measured_s": {threads: best step time}}``."""
    from ..models import create_model

    n = max_threads or torch.get_num_threads()
    if n <= 1:
        return {"threads": torch.get_num_threads(), "measured_s": {}}
    busy = busy_cores()
    if busy is not None and n - busy < 1.5:  # fewer than 2 idle cores: extra threads only wait
        torch.set_num_threads(1)
        return {"threads": 1, "measured_s": {}, "load": busy}
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = create_model("resnet20", in_chans=1)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    torch.random.set_rng_state(state)  # the probe leaves the caller's random stream alone

    def step_time(threads: int, give_up: float = float("inf")) -> float:
        torch.set_num_threads(threads)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            best = min(best, time.perf_counter() - t)
            if best > give_up:  # already clearly slower: stop paying for it
                break
        return best

    step_time(1)  # warm-up (allocations, kernels)
    timing = {1: step_time(1)}
    timing[n] = step_time(n, give_up=2 * timing[1])
    pick = min(timing, key=timing.get)
    torch.set_num_threads(pick)
    return {"threads": pick, "measured_s": {str(k): v for k, v in timing.items()}}


def set_threads(requested: int | None, *, device: str = "cpu") -> str:
    """Apply ``--threads`` (None: measure with ``choose_threads``); -> the line to print."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= MAX_THREADS:
            raise UserError(f"--threads must be an integer in 1..{MAX_THREADS}, got {requested!r}")
        torch.set_num_threads(requested)
        return f"threads: {requested} (--threads)"
    if str(device) == "auto" and torch.cuda.is_available():
        device = "cuda"
    if str(device).startswith(("cuda", "mps")):
        return f"threads: {torch.get_num_threads()} (the model runs on {device})"
    global _measured
    if _measured is None:
        available = torch.get_num_threads()
        _measured = (available, choose_threads(available))
    available, result = _measured
    torch.set_num_threads(result["threads"])
    if "load" in result:
        return (f"threads: 1 of {available} (other processes keep {result['load']:.1f} cores busy; "
                "--threads N overrides)")
    if not result["measured_s"]:
        return f"threads: {result['threads']} (one available)"
    timing = ", ".join(f"{k}: {1e3 * v:.0f} ms" for k, v in result["measured_s"].items())
    return (f"threads: {result['threads']} of {available} (faster per training step here: "
            f"{timing}; --threads N overrides)")
