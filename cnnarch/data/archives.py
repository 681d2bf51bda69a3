"""Downloads with checksum verification, and tar extraction that stays inside its folder.

- ``download(url, dest, md5=..., sha256=...)`` writes to ``dest.part``, verifies, then
  renames: a truncated or altered download is deleted and reported, and a previous good
  copy at ``dest`` is never touched.
- ``safe_extract(archive, target)`` refuses absolute member names, ``..`` components,
  links whose target lands outside ``target`` and device/fifo members, *before* writing
  anything; it extracts into a temporary sibling folder and renames it into place, so a
  failure leaves no half-extracted tree.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

from ..errors import UserError


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise UserError when ``path`` does not have the expected digest(s)."""
    for algo, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            got = file_digest(path, algo)
            if got != expected.lower():
                raise UserError(f"checksum mismatch for {path}: {algo} {got}, expected {expected}")


def download(url: str, dest: str | os.PathLike, *, md5: str | None = None,
             sha256: str | None = None, quiet: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` with checksum verification (see module docstring)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
            out.flush()
            os.fsync(out.fileno())
    except (OSError, http.client.HTTPException) as exc:  # HTTPException: garbled/cut replies
        part.unlink(missing_ok=True)
        raise UserError(f"download of {url} failed: {str(exc).strip() or type(exc).__name__}") from None
    try:
        verify(part, md5=md5, sha256=sha256)
    except UserError as exc:
        part.unlink(missing_ok=True)
        raise UserError(f"{exc}; the download from {url} is corrupt and was deleted") from None
    os.replace(part, dest)
    return dest


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"refusing archive member with an absolute path: {name!r}")
    if ".." in pure.parts or "\\" in name:
        raise UserError(f"refusing archive member that leaves the target folder: {name!r}")
    dest = (root / pure).resolve()
    if not dest.is_relative_to(root):
        raise UserError(f"refusing archive member that leaves the target folder: {name!r}")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = root if member.islnk() else dest.parent
        if link.is_absolute() or not (base / link).resolve().is_relative_to(root):
            raise UserError(f"refusing archive link {name!r} -> {member.linkname!r} "
                            "pointing outside the target folder")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UserError(f"refusing special archive member (device/fifo): {name!r}")


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a (gzipped) tar into ``target`` after checking every member (see docstring).

    Members that already exist in ``target`` are replaced only once the whole archive has
    extracted cleanly.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
            try:
                root = staging.resolve()
                for m in members:
                    _check_member(m, root)
                tar.extractall(staging, members=members, filter="data")
                for entry in staging.iterdir():
                    final = target / entry.name
                    if final.is_dir() and not final.is_symlink():
                        shutil.rmtree(final)
                    elif final.exists() or final.is_symlink():
                        final.unlink()
                    os.replace(entry, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"cannot extract {archive}: corrupt or unreadable archive ({exc})") from None
    return target
