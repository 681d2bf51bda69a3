"""Downloads with checksum verification, and tar extraction that stays inside its folder.

- ``download(url, dest, md5=..., sha256=...)`` writes to ``dest.part``, verifies, then
  renames: a truncated or altered download is deleted and reported, and a previous good
  copy at ``dest`` is never touched.
- ``safe_extract(archive, target)`` refuses absolute member names, ``..`` components,
  links whose target lands outside ``target`` and device/fifo members, *before* writing
  anything; it extracts into a temporary sibling folder and renames it into place, so a
  failure leaves no half-extracted tree. What the archive's headers claim is bounded
  before a byte is written: at most ``MAX_EXTRACT_BYTES`` in all (CIFAR-10 extracts to
  178 MB, CIFAR-100 to 161 MB) and ``MAX_MEMBERS`` members, so a small archive cannot
  fill the disk (a gzip "bomb"). A full, read-only or forbidden disk while extracting is
  one line saying so (not "corrupt").
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

from ..errors import UserError

MAX_EXTRACT_BYTES = 1 << 30  # 1 GiB: what an archive's members may claim in all
MAX_MEMBERS = 10_000
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


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
    for name, value in (("archive", archive), ("target", target)):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise UserError(f"safe_extract: {name} must be a path (str or os.PathLike), got {value!r}")
    archive, target = Path(archive), Path(target)
    if archive.is_dir():
        raise UserError(f"cannot extract {archive}: it is a folder, not a tar archive")
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            _check_claims(members, archive)
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
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise UserError(f"cannot extract {archive} into {target}: "
                            f"{exc.strerror or os.strerror(exc.errno)}") from None
        raise UserError(f"cannot extract {archive}: corrupt or unreadable archive ({exc})") from None
    except (tarfile.TarError, EOFError) as exc:
        raise UserError(f"cannot extract {archive}: corrupt or unreadable archive ({exc})") from None
    return target


def _check_claims(members: list[tarfile.TarInfo], archive: Path) -> None:
    """Refuse an archive whose headers claim more members or bytes than the bounds allow."""
    if len(members) > MAX_MEMBERS:
        raise UserError(f"refusing {archive}: {len(members):,} members (at most {MAX_MEMBERS:,})")
    claimed = sum(m.size for m in members if m.isfile())
    if claimed > MAX_EXTRACT_BYTES:
        raise UserError(f"refusing {archive}: its members claim {claimed:,} bytes "
                        f"(at most {MAX_EXTRACT_BYTES:,} are extracted)")
