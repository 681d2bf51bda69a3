"""Run a per-seed measurement once per seed of the context.

``per_seed(ctx, fn)`` -> ``{seed: fn(ctx, seed)}``, through ``ctx.per_seed`` (worker
processes where cores are free, memoised) when the context has it, else a loop over
``ctx.seeds``. ``fn`` is a module-level function returning a picklable dict.
"""

from __future__ import annotations

from collections.abc import Callable


def per_seed(ctx, fn: Callable) -> dict:
    if hasattr(ctx, "per_seed"):
        return dict(ctx.per_seed(fn))
    return {s: fn(ctx, s) for s in ctx.seeds}
