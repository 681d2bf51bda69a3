"""Checkpoints: atomic writes, safe loads, exact-resume state, and the run-folder lock.

A checkpoint is a dict of tensors and plain data only, so it loads with
``torch.load(weights_only=True)``: a checkpoint file can never run code.

    format, version, model (state_dict), optimizer, scaler, schedule, epoch, step,
    rng {torch, cuda, numpy, python, data}, config (plain dict), meta, history, best_acc

``meta`` is what ``load_model`` needs: model name and kwargs, num_classes, in_chans,
input_size (C, H, W), mean, std, classes, dataset, and ``transform``: the dataset's
evaluation transform as ``EvalTransform.to_dict()`` (cnnarch/data/transform.py; rebuild it
with ``EvalTransform.from_meta(meta)``, which also reads checkpoints without the key).

Writes go to a temporary file in the same folder, are fsync'ed, then ``os.replace``'d
over the target (and the folder fsync'ed): a crash at any moment leaves either the old or
the new checkpoint, never a torn one.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

FORMAT = "cnnarch-checkpoint"
VERSION = 1


# --- atomic files ---------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    return atomic_write_bytes(path, lambda f: torch.save(state, f))


# --- safe loads -----------------------------------------------------------------------------


def find_checkpoint(path: str | os.PathLike, prefer: str = "last") -> Path:
    """A checkpoint file, or a run folder (its checkpoints/{prefer}.pt, else the other one)."""
    p = Path(path)
    if p.is_dir():
        for name in (prefer, "best" if prefer == "last" else "last"):
            for candidate in (p / "checkpoints" / f"{name}.pt", p / f"{name}.pt"):
                if candidate.is_file():
                    return candidate
        raise UserError(f"{p} holds no checkpoint (expected {p}/checkpoints/last.pt)")
    if not p.exists():
        raise UserError(f"checkpoint {p} not found")
    return p


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load(weights_only=True)`` with one-line errors; checks it is ours."""
    p = find_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"refusing to load {p}: it holds objects other than tensors and plain "
                        f"data (weights_only=True; {first[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - torn/corrupt bytes fail in many ways (KeyError...)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read checkpoint {p}: corrupt or not a PyTorch file ({msg[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{p} is not a cnnarch training checkpoint (no meta); "
                        "plain state_dicts load with cnnarch.models.compat")
    meta = state.get("meta")
    missing = [k for k in ("model", "meta", "optimizer", "rng", "epoch", "step") if k not in state]
    if (missing or not isinstance(state["model"], dict) or not isinstance(meta, dict)
            or any(k not in meta for k in ("model", "num_classes", "in_chans"))):
        raise UserError(f"{p} is an incomplete cnnarch checkpoint "
                        f"({', '.join(missing) or 'model weights or meta'} missing or damaged)")
    return state


def build_model_from_meta(meta: dict):
    """The registry model a checkpoint's meta describes (no weights)."""
    from ..models import create_model, list_models

    name = meta.get("model")
    if name not in list_models():
        raise UserError(f"checkpoint is for model {name!r}, which this cnnarch does not have "
                        "(see `cnnarch models`)")
    kwargs = dict(meta.get("model_kwargs", {}))
    kwargs.update(num_classes=int(meta["num_classes"]), in_chans=int(meta["in_chans"]))
    try:
        return create_model(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"checkpoint's model options do not fit {name}: {exc}") from None


def load_model(path_or_run_dir: str | os.PathLike, device="cpu"):
    """-> (model in eval mode on ``device``, meta). A run folder loads its last.pt."""
    state = load_checkpoint(path_or_run_dir)
    meta = dict(state["meta"], config=state.get("config", {}))
    model = build_model_from_meta(meta)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as exc:
        raise UserError(f"checkpoint weights do not match {meta['model']} with its options "
                        f"(another architecture?): {str(exc).splitlines()[1].strip()[:200] if len(str(exc).splitlines()) > 1 else exc}") from None
    return model.to(device).eval(), meta


# --- RNG state ------------------------------------------------------------------------------


def rng_state(data_generator: torch.Generator | None) -> dict:
    """Every random stream a run draws from, as tensors and plain data."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        out["data"] = data_generator.get_state()
    return out


def set_rng_state(state: dict, data_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if data_generator is not None and "data" in state:
        data_generator.set_state(state["data"])


# --- one writer per run folder --------------------------------------------------------------


class RunLock:
    """An exclusive ``fcntl.flock`` on ``RUN/.lock`` (released by the OS if the process dies).

    A second process pointed at the same folder gets a UserError naming the holder's pid.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            try:
                holder = self.path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise UserError(f"run folder {self.path.parent} is in use by another process "
                            f"(pid {holder}); wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
