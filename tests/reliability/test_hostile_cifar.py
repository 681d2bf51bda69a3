"""Hostile CIFAR data: batches with wrong sizes, counts, types or labels, meta files that lie,
and archives whose headers claim too much (a small archive that would fill the disk).

Every case must end in one UserError line before anything is trained or allocated for it,
or load as a data set whose every label is a class.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cnnarch.data import archives, sources
from cnnarch.errors import UserError

N = 20
BATCHES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]

def cifar_folder(root: Path, change=None) -> Path:
    """A CIFAR-10 python folder of N images per batch; ``change(name, batch, meta)`` edits it."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    for name in BATCHES:
        batch = {b"data": rng.integers(0, 256, (N, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, N)]}
        if change is not None:
            change(name, batch, meta)
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def _in(name):
    """A change applied to batch ``name`` only."""
    def wrap(edit):
        def change(batch_name, batch, meta):
            if batch_name == name:
                edit(batch, meta)
        return change
    return wrap


def _set(key, value):
    return lambda batch, meta: batch.__setitem__(key, value)


HOSTILE = {  # case -> the change to the folder
    "rows of 3071 bytes": _in("data_batch_1")(_set(b"data", np.zeros((N, 3071), np.uint8))),
    "one label too few": _in("data_batch_2")(_set(b"labels", [0] * (N - 1))),
    "one label too many (test)": _in("test_batch")(_set(b"labels", [0] * (N + 1))),
    "3-d data": _in("data_batch_3")(_set(b"data", np.zeros((N, 3, 1024), np.uint8))),
    "data missing": _in("data_batch_4")(lambda b, m: b.pop(b"data")),
    "labels missing (test)": _in("test_batch")(lambda b, m: b.pop(b"labels")),
    "9 class names": _in("test_batch")(lambda b, m: m.__setitem__(b"label_names", m[b"label_names"][:9])),
    "training label 10": _in("data_batch_5")(_set(b"labels", [10] * N)),
    "training label -1": _in("data_batch_1")(_set(b"labels", [-1] * N)),
    "empty batch dict": _in("data_batch_2")(lambda b, m: b.clear()),
    "test label 10": _in("test_batch")(_set(b"labels", [10] * N)),
    "test label -1": _in("test_batch")(_set(b"labels", [-1] * N)),
    "pixels 300 in an int64 array": _in("data_batch_1")(_set(b"data", np.full((N, 3072), 300))),
    "fractional labels": _in("data_batch_1")(_set(b"labels", [1.5] * N)),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_cifar_batches_are_one_line(tmp_path, case):
    cifar_folder(tmp_path / "data", HOSTILE[case])
    with pytest.raises(UserError) as info:
        sources.load_dataset("cifar10", data_dir=tmp_path / "data")
    assert "\n" not in str(info.value) and "cifar" in str(info.value).lower()


def test_the_unchanged_folder_loads(tmp_path):
    """Control: the same builder without a change gives a data set (so each refusal above is
    the change's doing)."""
    ds = sources.load_dataset("cifar10", data_dir=cifar_folder(tmp_path / "data"))
    assert ds.train_size == 5 * N and ds.num_classes == 10


def test_a_batch_file_larger_than_any_cifar_file_is_refused_before_reading(tmp_path, monkeypatch):
    folder = cifar_folder(tmp_path / "data")
    size = (folder / "cifar-10-batches-py" / "data_batch_3").stat().st_size
    monkeypatch.setattr(sources, "MAX_BATCH_FILE_BYTES", size - 1)  # stands for 512 MiB
    monkeypatch.setattr(sources._ArrayUnpickler, "load", lambda self: pytest.fail("read"))
    with pytest.raises(UserError, match="data_batch_1: .* larger than any CIFAR file"):
        sources.load_dataset("cifar10", data_dir=folder)


# --- archives that claim too much ---------------------------------------------------------------


def _tar(path: Path, members: dict[str, int]) -> Path:
    """A .tar.gz of zero-filled members of the given sizes (gzip makes them tiny)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, size in members.items():
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    return path


@pytest.mark.parametrize("members, bound", [
    ({"cifar-10-batches-py/data_batch_1": 3 << 20}, "bytes"),  # one member beyond the bound
    ({f"cifar-10-batches-py/part{i}": 1 << 19 for i in range(5)}, "bytes"),  # the sum beyond it
    ({f"cifar-10-batches-py/f{i}": 0 for i in range(40)}, "members"),  # too many members
], ids=["one-big-member", "sum-of-members", "member-count"])
def test_archive_claiming_more_than_the_bounds_is_refused_before_writing(tmp_path, monkeypatch,
                                                                        members, bound):
    monkeypatch.setattr(archives, "MAX_EXTRACT_BYTES", 2 << 20)  # 2 MiB stands for 1 GiB here
    monkeypatch.setattr(archives, "MAX_MEMBERS", 30)
    archive = _tar(tmp_path / "cifar-10-python.tar.gz", members)
    target = tmp_path / "target"
    with pytest.raises(UserError, match=f"refusing .*{bound}"):
        archives.safe_extract(archive, target)
    assert list(target.iterdir()) == []


def test_archive_within_the_bounds_extracts(tmp_path, monkeypatch):
    """Control: the same shape of archive below the bounds extracts."""
    monkeypatch.setattr(archives, "MAX_EXTRACT_BYTES", 2 << 20)
    archive = _tar(tmp_path / "a.tar.gz", {"cifar-10-batches-py/data_batch_1": 1 << 20})
    archives.safe_extract(archive, tmp_path / "target")
    assert (tmp_path / "target" / "cifar-10-batches-py" / "data_batch_1").stat().st_size == 1 << 20


def test_the_default_bounds_hold_cifar():
    assert archives.MAX_EXTRACT_BYTES >= 200_000_000 and archives.MAX_MEMBERS >= 8


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES], ids=errno.errorcode.get)
def test_disk_error_while_extracting_says_so(tmp_path, monkeypatch, code):
    archive = _tar(tmp_path / "a.tar.gz", {"cifar-10-batches-py/data_batch_1": 1000})
    def full(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tarfile, "copyfileobj", full)
    target = tmp_path / "target"
    with pytest.raises(UserError) as info:
        archives.safe_extract(archive, target)
    msg = str(info.value)
    assert os.strerror(code) in msg and "corrupt" not in msg, msg
    assert list(target.iterdir()) == []
