"""Builders for tiny CIFAR archives in exactly the official python-pickle format."""

import io
import pickle
import tarfile

import numpy as np
import pytest


def _batch(n, rng, label_key, num_classes, coarse=False):
    d = {b"batch_label": b"training batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         label_key: [int(v) for v in rng.integers(0, num_classes, n)],
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if coarse:
        d[b"coarse_labels"] = [int(v) % 20 for v in d[label_key]]
    return pickle.dumps(d, protocol=2)


def build_cifar_archive(path, name="cifar10", per_batch=20, test_n=30, seed=0):
    """Write ``path`` (a .tar.gz) with the official member names and pickle layout."""
    rng = np.random.default_rng(seed)
    files = {}
    if name == "cifar10":
        folder = "cifar-10-batches-py"
        for i in range(1, 6):
            files[f"data_batch_{i}"] = _batch(per_batch, rng, b"labels", 10)
        files["test_batch"] = _batch(test_n, rng, b"labels", 10)
        files["batches.meta"] = pickle.dumps(
            {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                                   "dog", "frog", "horse", "ship", "truck")],
             b"num_cases_per_batch": per_batch, b"num_vis": 3072}, protocol=2)
    else:
        folder = "cifar-100-python"
        files["train"] = _batch(per_batch * 5, rng, b"fine_labels", 100, coarse=True)
        files["test"] = _batch(test_n, rng, b"fine_labels", 100, coarse=True)
        files["meta"] = pickle.dumps({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                      b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]},
                                     protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for member, payload in files.items():
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def cifar10_archive(tmp_path):
    return build_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10")


@pytest.fixture
def cifar100_archive(tmp_path):
    return build_cifar_archive(tmp_path / "cifar-100-python.tar.gz", "cifar100")
