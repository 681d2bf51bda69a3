"""``imagefolder:PATH``: class sub-folders of images through torchvision + DataLoader workers.

Layout: ``PATH/train/<class>/*`` with ``PATH/val/<class>/*`` (or ``test/``); or just
``PATH/<class>/*``, split by a fixed seeded 80/20 (stratified) split. Training transform:
RandomResizedCrop(image_size) + horizontal flip (torchvision's ImageNet recipe);
evaluation: resize to image_size * 256 / 224 and centre-crop. Normalisation statistics
are estimated on up to 256 training images (a fixed seeded sample). An image that cannot
be decoded stops the run with a one-line error naming its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import UserError

STATS_SAMPLE = 256  # training images used to estimate mean/std


def _checked_loader(path: str):
    from PIL import Image

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
        raise UserError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def _folder(root: Path):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(root), loader=_checked_loader)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"image folder {root}: {str(exc).splitlines()[0]}") from None


class ImageFolderData:
    """Same surface as ``InMemoryDataset`` where it makes sense (classes, mean, std,
    ``train_batches``/``eval_batches``); images are decoded by DataLoader workers."""

    def __init__(self, path: str, *, image_size: int = 224, workers: int = 4, seed: int = 0,
                 val_split: bool = False):
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError(f"image folder {root} does not exist or is not a folder")
        self.name = f"imagefolder:{root}"
        self.size = int(image_size)
        self.workers = max(0, int(workers))
        self.seed = seed
        self.eval_split = "val" if val_split else "test"
        train_dir = root / "train"
        test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
        if train_dir.is_dir() and test_dir is not None:
            self._train_set, self._test_set = _folder(train_dir), _folder(test_dir)
            self._train_idx = list(range(len(self._train_set)))
            self._test_idx = list(range(len(self._test_set)))
            if self._train_set.classes != self._test_set.classes:
                raise UserError(f"{train_dir} and {test_dir} have different class folders")
        else:
            full = _folder(root)
            self._train_set = self._test_set = full
            self._train_idx, self._test_idx = _split(full.targets, seed=0)
        self.classes = list(self._train_set.classes)
        self.num_classes = len(self.classes)
        if not self._train_idx or not self._test_idx:
            raise UserError(f"image folder {root} has too few images to train and test")
        self.in_chans = 3
        self.image_size = (self.size, self.size)
        self.mean, self.std = self._estimate_stats()

    def _estimate_stats(self):
        from torchvision.transforms import v2 as T

        tf = T.Compose([T.Resize(self.size), T.CenterCrop(self.size), T.PILToTensor()])
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(self._train_idx), generator=g)[:STATS_SAMPLE].tolist()
        s = torch.zeros(3, dtype=torch.float64)
        s2 = torch.zeros(3, dtype=torch.float64)
        n = 0
        for i in pick:
            path = self._train_set.samples[self._train_idx[i]][0]
            x = tf(_checked_loader(path)).double().div(255.0).flatten(1)  # 3 x HW
            s += x.sum(1)
            s2 += (x * x).sum(1)
            n += x.shape[1]
        mean = s / n
        std = (s2 / n - mean * mean).clamp_min(1e-6).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())

    def _transforms(self, train: bool):
        from torchvision.transforms import v2 as T

        tail = [T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)]
        if train:
            return T.Compose([T.RandomResizedCrop(self.size, antialias=True), T.RandomHorizontalFlip(), *tail])
        return T.Compose([T.Resize(int(math.floor(self.size * 256 / 224))), T.CenterCrop(self.size), *tail])

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self._train_idx) // batch_size

    def _loader(self, train: bool, batch_size: int, rank: int, world: int, epoch: int):
        from torch.utils.data import DataLoader, Subset
        from torch.utils.data.distributed import DistributedSampler

        base = self._train_set if train else self._test_set
        dataset = Subset(_Transformed(base, self._transforms(train)),
                         self._train_idx if train else self._test_idx)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        sampler = None
        if world > 1:
            sampler = DistributedSampler(dataset, world, rank, shuffle=train, seed=self.seed,
                                         drop_last=train)
            sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                          sampler=sampler, num_workers=self.workers, drop_last=train,
                          generator=g, pin_memory=torch.cuda.is_available(),
                          persistent_workers=False)

    def train_batches(self, batch_size: int, generator=None, *, rank: int = 0, world: int = 1,
                      epoch: int = 0, device="cpu"):
        """Normalised float batches of ``batch_size // world`` images for this rank."""
        yield from _reraise(self._loader(True, batch_size // world, rank, world, epoch), device)

    def eval_batches(self, batch_size: int, *, rank: int = 0, world: int = 1, device="cpu"):
        yield from _reraise(self._loader(False, batch_size, rank, world, 0), device)

    def __repr__(self) -> str:
        return (f"ImageFolderData({self.name}, train={len(self._train_idx)}, "
                f"{self.eval_split}={len(self._test_idx)}, classes={self.num_classes})")


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        path, target = self.base.samples[i]
        return self.transform(self.base.loader(path)), target


def _reraise(loader, device):
    """Iterate a DataLoader; a worker's UserError comes back as its own one-line message."""
    it = iter(loader)
    while True:
        try:
            x, y = next(it)
        except StopIteration:
            return
        except UserError as exc:
            lines = [ln for ln in str(exc).splitlines() if "cannot read image" in ln]
            msg = lines[-1].split("UserError: ", 1)[-1] if lines else str(exc).splitlines()[0]
            raise UserError(msg) from None
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _split(targets, seed: int = 0, test_fraction: float = 0.2):
    """Stratified, seeded split of indices (a fixed 80/20 split when there is no val/)."""
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    train, test = [], []
    for idx in by_class.values():
        perm = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
        k = max(1, round(len(perm) * test_fraction)) if len(perm) > 1 else 0
        test += perm[:k]
        train += perm[k:]
    return sorted(train), sorted(test)
