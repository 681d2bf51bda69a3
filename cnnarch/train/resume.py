"""What a resumed run may change: one rule, applied to every field of TrainConfig.

A run folder holds one run. Resuming it with other settings either

- is **refused** in one line naming the flag, for anything that changes the data, the
  model, the optimiser state or the meaning of the history (``REFUSED``: e.g. batch size,
  optimizer, schedule shape, seed, loss weights); or
- is **applied with a notice** (``NOTICED``: a longer run, a new peak lr, another device
  or precision, ...); a shorter run than what is already done is refused; or
- is **applied silently** (``SILENT``: where the output goes and how chatty it is).

The saved config comes from the run folder's ``config.toml``, or, when that is gone, from
the ``config`` every checkpoint carries (``saved_config``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .config import FIELD_NAMES, TrainConfig, read_toml

NOTICED = ("epochs", "iterations", "lr", "momentum", "weight_decay", "eval_every", "device",
           "precision", "channels_last", "compile", "workers", "data_dir", "download")
SILENT = ("out", "resume", "quiet", "log_every")
REFUSED = tuple(n for n in FIELD_NAMES if n not in NOTICED + SILENT)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_folder_of(path: str | Path) -> Path:
    """The run folder ``--resume PATH`` names (a run folder, or a checkpoint inside one)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"cannot resume: the run folder {p} does not exist")
    if p.is_file():
        return p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return p


def saved_config(path: str | Path) -> tuple[Path, dict]:
    """-> (run folder, the config it was trained with) from config.toml, else a checkpoint."""
    from .checkpoint import find_checkpoint, load_checkpoint

    run = run_folder_of(path)
    toml = run / "config.toml"
    if toml.is_file():
        return run, read_toml(toml)
    try:
        state = load_checkpoint(find_checkpoint(path))
    except UserError:
        raise UserError(f"cannot resume: {run} is not a run folder (no config.toml and no "
                        "checkpoint)") from None
    config = state.get("config")
    if not isinstance(config, dict):
        raise UserError(f"cannot resume: {run} has no config.toml and its checkpoint holds no config")
    return run, {k: v for k, v in config.items() if v is not None}


def resume_notices(saved: TrainConfig, new: TrainConfig, *, done_steps: int, done_epochs: int,
                   steps_per_epoch: int) -> list[str]:
    """Check ``new`` against the run's ``saved`` config; -> the notices to print.

    Raises a one-line UserError naming the first refused flag."""
    changed = [n for n in FIELD_NAMES if getattr(saved, n) != getattr(new, n)]
    for name in changed:
        if name in REFUSED:
            raise UserError(
                f"cannot resume with {flag(name)} {_show(getattr(new, name))}: the run was trained "
                f"with {_show(getattr(saved, name))}, and changing it would mix two runs in one "
                f"history (a resume may change {', '.join(flag(n) for n in NOTICED)}); start a new "
                f"run with another --out")
    total = new.iterations or new.epochs * steps_per_epoch
    if total < done_steps:
        what = f"--iterations {new.iterations}" if new.iterations else f"--epochs {new.epochs}"
        raise UserError(f"cannot resume with {what}: the run has already done {done_epochs} "
                        f"epochs ({done_steps} steps); give at least that many")
    notices = []
    for name in changed:
        if name not in NOTICED:
            continue
        note = f"{flag(name)} {_show(getattr(saved, name))} -> {_show(getattr(new, name))}"
        if name in ("epochs", "iterations") and new.schedule != "constant":
            note += f" (the {new.schedule} schedule now spans the longer run)"
        notices.append(note)
    return notices


def _show(v) -> str:
    return "unset" if v is None else str(v)
