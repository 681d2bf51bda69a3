"""Dataset sources: digits, CIFAR-10/100, synthetic (in memory) and image folders.

Dataset names (``load_dataset(name)``, ``--data``):

- ``digits``: scikit-learn's bundled handwritten digits, 1,797 real 8x8 grayscale images,
  values 0..16 scaled to uint8 0..255. A fixed stratified 80/20 train/test split (always
  the same, whatever the training seed), no download.
- ``cifar10``, ``cifar100``: the official python-pickle archives. ``data_dir`` may be the
  archive (``cifar-10-python.tar.gz``), a folder holding it, the extracted
  ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or a folder holding that.
  ``download=True`` fetches the archive (MD5-verified) into ``data_dir`` (default
  ``$CNNARCH_DATA`` or ``~/.cache/cnnarch/data``). The pickles are read with an unpickler
  that only accepts numpy arrays, so a crafted archive cannot run code.
- ``synthetic[:CxHxW[:K[:N]]]``: random uint8 images of shape C x H x W with K classes, N
  training and N // 4 test images (default ``synthetic:3x32x32:10:512``). For benchmarks.
  Example: ``synthetic:3x224x224:1000:256``.
- ``NAME+random-labels``: the in-memory data set NAME with the labels of each split
  permuted by a fixed generator (``RANDOM_LABELS_SEED``, whatever the training seed): the
  same images and the same class counts, but no label says anything about its image, so
  nothing can be learned (the random-labels negative control). Example:
  ``digits+random-labels``.
- ``imagefolder:PATH``: PATH holds one sub-folder per class (or ``train/`` and ``val/`` or
  ``test/`` folders each holding them; otherwise a fixed 80/20 split is made), at the
  images' native size unless ``image_size`` says otherwise. Served through DataLoader
  workers (``ImageFolderData``, data/imagefolder.py: layout, symlinks, size bounds); an
  unreadable image is reported with its path.

Every dataset has ``eval_transform``: the ``EvalTransform`` (data/transform.py) that turns
an image into the model's input as this dataset evaluates it; checkpoints store it.

``val_split=True`` holds out part of the training split for validation (CIFAR: the
paper's 45k/5k; digits: 10 %) and puts it in the ``test_*`` fields (``eval_split ==
"val"``), so the official test set is never seen while tuning.

Small datasets live on ``device`` as uint8 N x C x H x W tensors; ``normalize`` and
``augment`` run batched on that device. Normalisation statistics come from the training
split only.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .archives import download as download_file
from .archives import safe_extract
from .augment import AugmentSpec, augment_batch
from .transform import EvalTransform

DATASETS = ("digits", "cifar10", "cifar100", "synthetic", "imagefolder:PATH", "NAME+random-labels")
DIGITS_SPLIT_SEED = 0  # the digits train/test split never changes with the training seed
RANDOM_LABELS = "+random-labels"  # the modifier that permutes a data set's labels
RANDOM_LABELS_SEED = 0  # the permutation never changes with the training seed


@dataclass
class InMemoryDataset:
    """A whole dataset as uint8 tensors on one device (see the module docstring)."""

    name: str
    train_images: torch.Tensor  # N x C x H x W, uint8
    train_labels: torch.Tensor  # N, int64
    test_images: torch.Tensor  # M x C x H x W, uint8 (validation images when eval_split == "val")
    test_labels: torch.Tensor  # M, int64
    num_classes: int
    classes: list[str]
    aug: AugmentSpec = field(default_factory=AugmentSpec)
    eval_split: str = "test"  # "test" or "val"
    mean: tuple[float, ...] = ()  # per channel, [0, 1] units, from the training split
    std: tuple[float, ...] = ()

    def __post_init__(self):
        if not self.mean:
            self.mean, self.std = channel_stats(self.train_images)
        self._mean_t = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1)
        self._std_t = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    @property
    def in_chans(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[2:])

    @property
    def train_size(self) -> int:
        return len(self.train_labels)

    @property
    def eval_transform(self) -> EvalTransform:
        """Image -> model input as evaluated here (stored in checkpoints; data/transform.py)."""
        return EvalTransform((self.in_chans, *self.image_size), self.mean, self.std,
                             tuple(self.classes), 0)

    def to(self, device) -> InMemoryDataset:
        device = torch.device(device)
        if device == self.device:
            return self
        return InMemoryDataset(self.name, self.train_images.to(device), self.train_labels.to(device),
                               self.test_images.to(device), self.test_labels.to(device),
                               self.num_classes, self.classes, self.aug, self.eval_split,
                               self.mean, self.std)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> float32, (x / 255 - mean) / std."""
        return (images.float().div_(255.0) - self._mean_t) / self._std_t

    def augment(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """This dataset's training augmentation (uint8 in, uint8 out, same shape)."""
        return augment_batch(images, self.aug, generator)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps per epoch (the last partial batch is dropped, as in airbench)."""
        return len(self.train_labels) // batch_size

    def train_batches(self, batch_size: int, generator: torch.Generator | None = None, *,
                      rank: int = 0, world: int = 1, epoch: int = 0, device=None):
        """One epoch of augmented, normalised training batches for this rank.

        The permutation and the augmentation are drawn for the whole *global* batch of
        ``batch_size`` images (identically on every rank), then rank ``r`` takes its
        contiguous ``batch_size // world`` share: N ranks see exactly the images, crops and
        flips one process would see.
        """
        n = len(self.train_labels)
        per_rank = batch_size // world
        perm = torch.randperm(n, device=self.device, generator=generator)
        for i in range(n // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            images = self.augment(self.train_images[idx], generator)
            mine = slice(rank * per_rank, (rank + 1) * per_rank)
            yield self.normalize(images[mine]), self.train_labels[idx][mine]

    def eval_batches(self, batch_size: int, *, rank: int = 0, world: int = 1, device=None):
        """The evaluation split in order, rank ``r`` taking every world-th batch."""
        n = len(self.test_labels)
        for j, start in enumerate(range(0, n, batch_size)):
            if j % world == rank:
                sl = slice(start, start + batch_size)
                yield self.normalize(self.test_images[sl]), self.test_labels[sl]

    def __repr__(self) -> str:
        return (f"InMemoryDataset({self.name}, train={tuple(self.train_images.shape)}, "
                f"{self.eval_split}={tuple(self.test_images.shape)}, classes={self.num_classes}, "
                f"device={self.device})")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a uint8 N x C x H x W tensor, in [0, 1] units."""
    x = images.double().div(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(x.mean(dim=1).tolist()), tuple(std.tolist())


# --- digits ---------------------------------------------------------------------------------


def load_digits(*, val_split: bool = False, device="cpu") -> InMemoryDataset:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # N x 1 x 8 x 8
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=0.2, stratify=labels,
                                              random_state=DIGITS_SPLIT_SEED)
    if val_split:
        x_tr, x_te, y_tr, y_te = train_test_split(x_tr, y_tr, test_size=0.1, stratify=y_tr,
                                                  random_state=DIGITS_SPLIT_SEED)
    return _in_memory("digits", x_tr, y_tr, x_te, y_te, [str(d) for d in range(10)],
                      AugmentSpec(pad=1, flip=False), "val" if val_split else "test", device)


def _in_memory(name, x_tr, y_tr, x_te, y_te, classes, aug, eval_split, device) -> InMemoryDataset:
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt).to(device)  # noqa: E731
    return InMemoryDataset(name, t(x_tr, torch.uint8), t(y_tr, torch.int64), t(x_te, torch.uint8),
                           t(y_te, torch.int64), len(classes), list(classes), aug, eval_split)


# --- CIFAR ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CifarFiles:
    archive: str
    folder: str
    url: str
    md5: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes


CIFAR = {
    "cifar10": CifarFiles(
        "cifar-10-python.tar.gz", "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
        b"labels", b"label_names"),
    "cifar100": CifarFiles(
        "cifar-100-python.tar.gz", "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",), "test", "meta", b"fine_labels", b"fine_label_names"),
}


def default_data_dir() -> Path:
    return Path(os.environ.get("CNNARCH_DATA", Path.home() / ".cache" / "cnnarch" / "data"))


class _ArrayUnpickler(pickle.Unpickler):
    """Accepts the numpy array reconstruction the CIFAR pickles use, nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # protocol-2 pickles written by Python 3 store bytes this way

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


# The largest official batch file is CIFAR-100's train (about 160 MB); a bigger one is not a
# CIFAR batch, and is refused before it is read into memory.
MAX_BATCH_FILE_BYTES = 512 << 20


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BATCH_FILE_BYTES:
                raise UserError(f"{path}: {size / 2**20:.0f} MiB is larger than any CIFAR file "
                                f"({MAX_BATCH_FILE_BYTES >> 20} MiB at most)")
            obj = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except FileNotFoundError:
        raise UserError(f"missing CIFAR file {path}; the extracted folder is incomplete") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise UserError(f"cannot read {path}: corrupt or not a CIFAR pickle ({exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"cannot read {path}: expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _find_cifar_folder(files: CifarFiles, data_dir, download: bool) -> Path:
    """Resolve ``data_dir`` to an extracted CIFAR folder, extracting/downloading if needed."""
    root = Path(data_dir) if data_dir else default_data_dir()
    if root.is_file():
        if not tarfile.is_tarfile(root):
            raise UserError(f"{root} is not a tar archive (expected {files.archive})")
        target = root.parent
        if (target / files.folder / files.test).is_file():
            return target / files.folder
        safe_extract(root, target)
        return _expect_folder(target / files.folder, root)
    for candidate in (root, root / files.folder):
        if (candidate / files.test).is_file():
            return candidate
    archive = root / files.archive
    if not archive.is_file():
        if not download:
            raise UserError(f"{files.archive} not found in {root}; pass --download, or --data-dir "
                            f"pointing at the archive or its extracted {files.folder} folder")
        download_file(files.url, archive, md5=files.md5)
    safe_extract(archive, root)
    return _expect_folder(root / files.folder, archive)


def _expect_folder(folder: Path, archive: Path) -> Path:
    if not folder.is_dir():
        raise UserError(f"{archive} does not contain the expected {folder.name}/ folder")
    return folder


def _cifar_split(d: dict, label_key: str, path: Path, num_classes: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One batch as the official files hold it: N x 3072 uint8 pixels and N integer labels,
    each a class; anything else is refused before it is cast or trained on."""
    try:
        data, labels = d["data"], np.asarray(d[label_key])
    except KeyError as exc:
        raise UserError(f"{path} lacks the {exc} entry of a CIFAR batch") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: expected uint8 pixel data in a CIFAR batch, got {kind}")
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise UserError(f"{path}: expected N x 3072 uint8 data and N labels, got "
                        f"{data.shape} and {labels.shape}")
    if len(labels) and labels.dtype.kind not in "iu":
        raise UserError(f"{path}: CIFAR labels must be integers, got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: CIFAR labels outside 0..{num_classes - 1} "
                        f"(found {labels.min()}..{labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar(name: str, *, data_dir=None, download: bool = False, val_split: bool = False,
               seed: int = 0, device="cpu") -> InMemoryDataset:
    files = CIFAR[name]
    folder = _find_cifar_folder(files, data_dir, download)
    label_key = files.label_key.decode()
    num_classes = 10 if name == "cifar10" else 100
    parts = [_cifar_split(_read_pickle(folder / f), label_key, folder / f, num_classes)
             for f in files.train]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_split(_read_pickle(folder / files.test), label_key, folder / files.test,
                              num_classes)
    meta = _read_pickle(folder / files.meta)
    classes = [c.decode() if isinstance(c, bytes) else str(c)
               for c in meta.get(files.names_key.decode(), [])]
    if len(classes) != num_classes:
        raise UserError(f"{folder / files.meta}: expected {num_classes} class names, got {len(classes)}")
    eval_split = "test"
    if val_split:  # Sec. 4.2: 45k/5k train/val split (a tenth of the training set)
        perm = np.random.default_rng(seed).permutation(len(x_tr))
        n_val = len(x_tr) // 10
        x_te, y_te = x_tr[perm[:n_val]], y_tr[perm[:n_val]]
        x_tr, y_tr = x_tr[perm[n_val:]], y_tr[perm[n_val:]]
        eval_split = "val"
    return _in_memory(name, x_tr, y_tr, x_te, y_te, classes, AugmentSpec(pad=4, flip=True),
                      eval_split, device)


# --- synthetic ------------------------------------------------------------------------------


def parse_synthetic(spec: str) -> tuple[tuple[int, int, int], int, int]:
    """``synthetic[:CxHxW[:K[:N]]]`` -> ((C, H, W), K, N)."""
    parts = spec.split(":")[1:]
    try:
        shape = tuple(int(v) for v in parts[0].lower().split("x")) if parts else (3, 32, 32)
        k = int(parts[1]) if len(parts) > 1 else 10
        n = int(parts[2]) if len(parts) > 2 else 512
    except ValueError:
        shape, k, n = (), 0, 0
    if len(shape) != 3 or min(shape) < 1 or k < 1 or n < 4 or len(parts) > 3:
        raise UserError(f"bad synthetic dataset {spec!r}; expected synthetic:CxHxW:CLASSES:N, "
                        "e.g. synthetic:3x224x224:1000:256")
    return shape, k, n


def load_synthetic(spec: str = "synthetic", *, seed: int = 0, device="cpu") -> InMemoryDataset:
    shape, k, n = parse_synthetic(spec)
    g = torch.Generator().manual_seed(seed)
    n_test = max(n // 4, 1)
    x = torch.randint(0, 256, (n + n_test, *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, k, (n + n_test,), generator=g)
    pad = max(1, min(4, shape[1] // 8))
    return _in_memory(f"synthetic:{'x'.join(map(str, shape))}:{k}:{n}", x[:n], y[:n], x[n:], y[n:],
                      [str(i) for i in range(k)], AugmentSpec(pad=pad, flip=True), "test", device)


# --- permuted labels ------------------------------------------------------------------------


def permute_labels(ds: InMemoryDataset) -> InMemoryDataset:
    """``ds`` with the labels of each split permuted by a fixed generator (images untouched)."""
    if not isinstance(ds, InMemoryDataset):
        raise UserError(f"{RANDOM_LABELS} needs an in-memory data set (digits, cifar10, cifar100, "
                        f"synthetic), not {ds.name}")
    g = torch.Generator().manual_seed(RANDOM_LABELS_SEED)

    def shuffled(labels: torch.Tensor) -> torch.Tensor:
        return labels[torch.randperm(len(labels), generator=g).to(labels.device)]

    return InMemoryDataset(ds.name + RANDOM_LABELS, ds.train_images, shuffled(ds.train_labels),
                           ds.test_images, shuffled(ds.test_labels), ds.num_classes, ds.classes,
                           ds.aug, ds.eval_split, ds.mean, ds.std)


# --- the entry point ------------------------------------------------------------------------


def load_dataset(name: str, *, data_dir=None, download: bool = False, val_split: bool = False,
                 seed: int = 0, device="cpu", image_size: int = 0, workers: int = 4):
    """Load a dataset by name (see the module docstring for names and options).

    Returns an ``InMemoryDataset`` (digits, cifar10, cifar100, synthetic) or an
    ``ImageFolderData`` (imagefolder:PATH). ``seed`` drives the CIFAR 45k/5k split and the
    synthetic data; the digits split is fixed.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"dataset name must be a non-empty string; choose one of {', '.join(DATASETS)}")
    key = name.lower()
    if key.endswith(RANDOM_LABELS) and len(key) > len(RANDOM_LABELS):
        return permute_labels(load_dataset(name[:-len(RANDOM_LABELS)], data_dir=data_dir,
                                           download=download, val_split=val_split, seed=seed,
                                           device=device, image_size=image_size, workers=workers))
    if key == "digits":
        return load_digits(val_split=val_split, device=device)
    if key in CIFAR:
        return load_cifar(key, data_dir=data_dir, download=download, val_split=val_split,
                          seed=seed, device=device)
    if key == "synthetic" or key.startswith("synthetic:"):
        return load_synthetic(name, seed=seed, device=device)
    if key.startswith("imagefolder:"):
        from .imagefolder import ImageFolderData

        return ImageFolderData(name.split(":", 1)[1], image_size=image_size,
                               workers=workers, seed=seed, val_split=val_split)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
