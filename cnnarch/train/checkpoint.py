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
the new checkpoint, never a torn one. ``atomic_write_bytes`` / ``atomic_write_text`` are the
one home of atomic output for the whole package (reports, figures, JSON, ONNX files too):
the temporary file is removed on every exit path, a symlink at the target is replaced,
never written through, and a full, read-only or forbidden disk (ENOSPC, EDQUOT, EROFS,
EACCES, EPERM, EFBIG) is a ``StorageError``: one line naming the path.

Loading checks, before ``torch.load`` allocates anything, that the file is a zip whose
members claim no more bytes than the file holds (torch writes them uncompressed) and
whose bytes match the CRC-32 torch's writer stores for each member (``torch.load`` itself
never compares them, so a flipped bit in the weights would load silently), and, after,
the format version (``VERSION``; a newer one is refused).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import stat
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, first_line

FORMAT = "cnnarch-checkpoint"
VERSION = 1  # the newest checkpoint format this code reads and writes
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
ZIP_SLACK = 1 << 16  # bytes: zip headers a member's size may not account for


class StorageError(UserError):
    """The disk refused a write (full, read-only, no permission): one line naming the path."""


def storage_error(exc: OSError, path, *, target: bool = False) -> StorageError | None:
    """The StorageError for ``exc`` when it is a disk condition, else None. It names the
    file the error names, else ``path``; with ``target``, always ``path`` (the file being
    written, not the temporary an atomic write failed on)."""
    if exc.errno not in STORAGE_ERRNOS:
        return None
    where = path if target else (exc.filename or path)
    return StorageError(f"cannot write {where}: {exc.strerror or os.strerror(exc.errno)}")


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
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename over it.

    SIGINT and SIGTERM are held back until the file is whole (or its temporary removed), then
    delivered (cnnarch/signals.py ``deferred``): a signal never leaves a torn file or a ``.tmp``."""
    from ..signals import deferred

    path = Path(path)
    with deferred():
        _write_replace(path, write)
    return path


def _write_replace(path: Path, write) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (storage_error(exc, path, target=True) or exc) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise (storage_error(exc, path, target=True) or exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Serialise in memory first, so a disk error is a plain OSError from one write (torch's
    own writer would wrap it in an internal RuntimeError). ``state`` must be a cnnarch
    checkpoint of tensors and plain data only (what ``load_checkpoint`` reads back)."""
    _check_path("save_checkpoint", "path", path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"save_checkpoint: state must be a dict with format={FORMAT!r} (see "
                        f"cnnarch.train.checkpoint), got {type(state).__name__}")
    _check_plain(state, "state")
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, lambda f: f.write(buf.getbuffer()))


PLAIN_LEAVES = (torch.Tensor, str, bytes, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_plain(value, where: str) -> None:
    """A UserError naming the first entry of ``value`` that is not a tensor or plain data (it
    would be written, and then refused by the weights-only loader)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise UserError(f"save_checkpoint: {where} has a key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, PLAIN_LEAVES):
        raise UserError(f"save_checkpoint: {where} is a {type(value).__name__}; a checkpoint holds "
                        "tensors and plain data only")


def _check_path(function: str, name: str, value) -> None:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise UserError(f"{function}: {name} must be a file or folder name (str or os.PathLike), "
                        f"got {value!r}")


# --- safe loads -----------------------------------------------------------------------------


def find_checkpoint(path: str | os.PathLike, prefer: str = "last", *, fallback: bool = True) -> Path:
    """A checkpoint file, or a run folder (its checkpoints/{prefer}.pt, else, with
    ``fallback``, the other one)."""
    _check_path("find_checkpoint", "path", path)
    if prefer not in ("last", "best"):
        raise UserError(f"find_checkpoint: prefer must be 'last' or 'best', got {prefer!r}")
    p = Path(path)
    if p.is_dir():
        names = (prefer, "best" if prefer == "last" else "last") if fallback else (prefer,)
        for name in names:
            for candidate in (p / "checkpoints" / f"{name}.pt", p / f"{name}.pt"):
                if candidate.is_file():
                    return candidate
        raise UserError(f"{p} holds no checkpoint (expected {p}/checkpoints/last.pt)")
    if not p.exists():
        raise UserError(f"checkpoint {p} not found")
    return p


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load(weights_only=True)`` with one-line errors; checks it is ours."""
    _check_path("load_checkpoint", "path", path)
    p = find_checkpoint(path)
    check_zip(p)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"refusing to load {p}: it holds objects other than tensors and plain "
                        f"data (weights_only=True; {first_line(exc)[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - torn/corrupt bytes fail in many ways (KeyError...)
        raise UserError(f"cannot read checkpoint {p}: corrupt or not a PyTorch file "
                        f"({first_line(exc)[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{p} is not a cnnarch training checkpoint (no meta); "
                        "plain state_dicts load with cnnarch.models.compat")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{p} has no valid checkpoint format version ({version!r})")
    if version > VERSION:
        raise UserError(f"{p} was written by a newer cnnarch (checkpoint format {version}; this "
                        f"one reads up to {VERSION}); upgrade cnnarch to load it")
    meta = state.get("meta")
    missing = [k for k in ("model", "meta", "optimizer", "rng", "epoch", "step") if k not in state]
    if (missing or not isinstance(state["model"], dict) or not isinstance(meta, dict)
            or any(k not in meta for k in ("model", "num_classes", "in_chans"))):
        raise UserError(f"{p} is an incomplete cnnarch checkpoint "
                        f"({', '.join(missing) or 'model weights or meta'} missing or damaged)")
    _check_meta(meta, p)
    return state


def _check_meta(meta: dict, p: Path) -> None:
    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000

    bad = [k for k in ("num_classes", "in_chans") if not count(meta[k])]
    size = meta.get("input_size")
    if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 3
                                 and all(count(v) for v in size)):
        bad.append("input_size")
    if not isinstance(meta["model"], str):
        bad.append("model")
    if bad:
        raise UserError(f"{p} is a damaged cnnarch checkpoint (meta {', '.join(bad)}: "
                        f"{', '.join(repr(meta.get(k)) for k in bad)})")


def check_zip(path: Path) -> None:
    """Refuse a zip-format torch file whose members claim more bytes than the file holds
    (torch stores them uncompressed), before anything is allocated for them, or whose
    bytes fail their CRC-32 (damaged on disk or in transfer). Files in torch's legacy
    (non-zip) format pass through to the weights-only unpickler."""
    import zipfile

    try:
        size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as zf:
            claimed = sum(info.file_size for info in zf.infolist())
            packed = [i.filename for i in zf.infolist() if i.compress_type != zipfile.ZIP_STORED]
            if packed:
                raise UserError(f"refusing to load {path}: it holds compressed members ({packed[0]}); "
                                "torch checkpoints store them uncompressed")
            if claimed > size + ZIP_SLACK:
                raise UserError(f"refusing to load {path}: its members claim {claimed:,} bytes in a "
                                f"{size:,}-byte file")
            damaged = zf.testzip()  # reads every member once, comparing its CRC-32
    except UserError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return  # torch.load reports what is wrong with it
    if damaged is not None:
        raise UserError(f"cannot read checkpoint {path}: member {damaged} fails its CRC-32 check "
                        "(the file was damaged after it was written)")


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
    _check_path("load_model", "path_or_run_dir", path_or_run_dir)
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
        try:  # O_NOFOLLOW: a symlink at RUN/.lock is never written through
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UserError(f"{self.path} is a symbolic link; refusing to write through it "
                                "(remove it, or choose another --out)") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"{self.path} is not a regular file; remove it or choose another --out")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise self._in_use() from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def _in_use(self) -> UserError:
        try:
            holder = self.path.read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        return UserError(f"run folder {self.path.parent} is in use by another process "
                         f"(pid {holder}); wait for it to finish or choose another --out")

    def check_free(self) -> None:
        """Raise the same UserError as ``acquire`` when another process holds the lock."""
        import fcntl

        if not self.path.is_file() or self.path.is_symlink():
            return
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a probe: nothing is written
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise self._in_use() from None
        finally:
            os.close(fd)

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
