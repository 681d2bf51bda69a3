"""``imagefolder:PATH``: class sub-folders of images, decoded by DataLoader workers.

Layout (``PATH`` is the folder given):

- ``PATH/<class>/**/<image>``: a fixed, seeded, stratified 80/20 train/test split;
- ``PATH/train/<class>/...`` with ``PATH/val/<class>/...`` and/or ``PATH/test/<class>/...``.

Images are files ending in one of ``IMG_EXTENSIONS`` (any case). Symbolic links inside the
folder (to files or folders) are skipped, never followed: a link cannot pull files from
outside the tree into it, nor loop back and count the same image twice. A folder with fewer
than two classes is refused.

Validation (``val_split=True``, the training default): a stratified 10 % of the training
images is held out and evaluated instead of the test images (``PATH/val/`` when it exists).

Image size: ``image_size=0`` takes the native size, the median shorter side of up to
``STATS_SAMPLE`` training images (read from their headers), capped at ``NATIVE_CAP`` px;
an explicit size above the native one is allowed with a warning (upscaling). Sizes above
``MAX_IMAGE_SIZE`` are refused before anything is allocated; each file is opened through
``data.images.open_image`` (bounded pixel count).

Training transform: RandomResizedCrop(size) + horizontal flip (torchvision's ImageNet
recipe). Evaluation: ``self.eval_transform`` (data/transform.py): the shorter side resized
to ``floor(size * 256 / 224)`` and the centre ``size x size`` cropped. Normalisation
statistics come from the same sample of training images under the evaluation transform.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import statistics
from pathlib import Path

import torch

from ..errors import UserError, first_line
from ..hardware import usable_cores
from .images import open_image
from .transform import EvalTransform

log = logging.getLogger("cnnarch.data")

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
STATS_SAMPLE = 256  # training images used for the native size and mean/std
NATIVE_CAP = 224  # px: the native size never exceeds ImageNet's
MAX_IMAGE_SIZE = 1024  # px: the largest --image-size accepted
VAL_FRACTION = 0.1  # of the training images, when val_split and no val/ folder
TEST_FRACTION = 0.2  # of all images, when there is no train/ folder


def _checked_loader(path: str):
    """A training image as RGB; every failure is a one-line UserError naming ``path``."""
    return open_image(path).convert("RGB")


def scan_folder(root: Path) -> tuple[list[str], list[tuple[str, int]], int]:
    """-> (class names, [(path, label)], symlinks skipped), without following any link."""
    skipped = 0
    classes = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise UserError(f"image folder {root}: {exc.strerror or first_line(exc)}") from None
    for e in entries:
        if e.is_symlink():
            skipped += 1
        elif e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
            classes.append(e.name)
    samples = []
    for label, name in enumerate(classes):
        for folder, dirs, files in os.walk(root / name, followlinks=False):
            skipped += sum(os.path.islink(os.path.join(folder, d)) for d in dirs)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                path = os.path.join(folder, f)
                if os.path.islink(path):
                    skipped += 1
                elif f.lower().endswith(IMG_EXTENSIONS):
                    samples.append((path, label))
    return classes, samples, skipped


class ImageFolderData:
    """Same surface as ``InMemoryDataset`` where it makes sense (classes, mean, std,
    ``eval_transform``, ``train_batches``/``eval_batches``); images are decoded by DataLoader
    workers."""

    def __init__(self, path: str, *, image_size: int = 0, workers: int = 4, seed: int = 0,
                 val_split: bool = False):
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError(f"image folder {root} does not exist or is not a folder")
        image_size = int(image_size)
        if not 0 <= image_size <= MAX_IMAGE_SIZE:
            raise UserError(f"image_size {image_size} is out of range; use 1..{MAX_IMAGE_SIZE} px "
                            "(0 = the images' native size)")
        self.name = f"imagefolder:{root}"
        self.workers = min(max(0, int(workers)), usable_cores())  # more would only queue
        self.seed = seed
        self.eval_split = "val" if val_split else "test"
        self._train, self._test, self.classes = self._splits(root, val_split)
        self.num_classes = len(self.classes)
        self.in_chans = 3
        self.size = image_size or self._native_size()
        self.image_size = (self.size, self.size)
        self.mean, self.std = self._estimate_stats()
        self._stored_transform: EvalTransform | None = None

    def evaluate_with(self, transform: EvalTransform) -> None:
        """Evaluate through ``transform`` (a checkpoint's, as ``predict`` does) rather than the
        one estimated from the folder now: the same crop, mean and std the model was trained
        with, whatever has changed in the folder since."""
        if tuple(transform.classes) != tuple(self.classes):
            raise UserError(f"{self.name}: its classes {list(self.classes)} differ from the "
                            f"checkpoint's {list(transform.classes)}")
        self._stored_transform = transform

    # -- splits ----------------------------------------------------------------------------

    def _splits(self, root: Path, val_split: bool):
        train_dir, val_dir, test_dir = (root / d for d in ("train", "val", "test"))
        if train_dir.is_dir() and (val_dir.is_dir() or test_dir.is_dir()):
            classes, train = self._scan(train_dir)
            held_dir = val_dir if val_split and val_dir.is_dir() else (test_dir if test_dir.is_dir() else val_dir)
            held_classes, held = self._scan(held_dir)
            if held_classes != classes:
                raise UserError(f"{train_dir} and {held_dir} have different class folders")
            if val_split and held_dir != val_dir:
                train, held = _split(train, VAL_FRACTION, seed=0)
        else:
            classes, everything = self._scan(root)
            train, held = _split(everything, TEST_FRACTION, seed=0)
            if val_split:
                train, held = _split(train, VAL_FRACTION, seed=0)
        if not train or not held:
            raise UserError(f"image folder {root} has too few images to train and "
                            f"{self.eval_split} ({len(train)} + {len(held)})")
        return train, held, classes

    @staticmethod
    def _scan(folder: Path):
        classes, samples, skipped = scan_folder(folder)
        if skipped:
            log.warning("image folder %s: %d symbolic link%s skipped (links are not followed)",
                        folder, skipped, "" if skipped == 1 else "s")
        if not samples:
            raise UserError(f"image folder {folder} holds no images ({', '.join(IMG_EXTENSIONS)}) "
                            "in class sub-folders")
        if len(classes) < 2:
            raise UserError(f"image folder {folder} has {len(classes)} class folder "
                            f"({', '.join(classes)}); a classifier needs at least 2")
        return classes, samples

    # -- size and statistics ---------------------------------------------------------------

    def _sample(self) -> list[str]:
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(self._train), generator=g)[:STATS_SAMPLE].tolist()
        return [self._train[i][0] for i in pick]

    def _native_size(self) -> int:
        from PIL import Image

        sides = []
        for path in self._sample():
            try:
                with Image.open(path) as img:  # header only
                    sides.append(min(img.size))
            except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
                raise UserError(f"cannot read image {path}: {first_line(exc)}") from None
        return max(1, min(NATIVE_CAP, int(statistics.median(sides))))

    def warn_if_upscaling(self) -> None:
        """A warning when the chosen size is larger than the images' median shorter side."""
        from PIL import Image

        sides = []
        for path in self._sample()[:32]:
            try:
                with Image.open(path) as img:
                    sides.append(min(img.size))
            except Exception:  # noqa: BLE001 - reported when the image is decoded
                continue
        if sides and self.size > statistics.median(sides):
            log.warning("warning: image size %d px upscales these images (median shorter side "
                        "%d px); --image-size 0 trains at their native size", self.size,
                        int(statistics.median(sides)))

    def _estimate_stats(self):
        plain = EvalTransform((3, self.size, self.size), (0.0,) * 3, (1.0,) * 3, (), self._resize)
        s = torch.zeros(3, dtype=torch.float64)
        s2 = torch.zeros(3, dtype=torch.float64)
        n = 0
        for path in self._sample():
            x = plain.pixels(_checked_loader(path)).double().flatten(1)  # 3 x HW
            s += x.sum(1)
            s2 += (x * x).sum(1)
            n += x.shape[1]
        mean = s / n
        std = (s2 / n - mean * mean).clamp_min(1e-6).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())

    @property
    def _resize(self) -> int:
        return int(math.floor(self.size * 256 / 224))

    @property
    def eval_transform(self) -> EvalTransform:
        """Image -> model input as evaluated here (stored in checkpoints; data/transform.py)."""
        if self._stored_transform is not None:
            return self._stored_transform
        return EvalTransform((3, self.size, self.size), self.mean, self.std, tuple(self.classes),
                             self._resize)

    @property
    def train_size(self) -> int:
        return len(self._train)

    # -- batches ---------------------------------------------------------------------------

    def _train_transform(self):
        from torchvision.transforms import v2 as T

        return T.Compose([T.RandomResizedCrop(self.size, antialias=True), T.RandomHorizontalFlip(),
                          T.PILToTensor(), T.ToDtype(torch.float32, scale=True),
                          T.Normalize(self.mean, self.std)])

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self._train) // batch_size

    def _loader(self, train: bool, batch_size: int, rank: int, world: int, epoch: int):
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        transform = self._train_transform() if train else self.eval_transform.apply
        dataset = _Transformed(self._train if train else self._test, transform)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        sampler = None
        if world > 1:
            sampler = DistributedSampler(dataset, world, rank, shuffle=train, seed=self.seed,
                                         drop_last=train)
            sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                          sampler=sampler, num_workers=self.workers, drop_last=train,
                          generator=g, pin_memory=torch.cuda.is_available(),
                          persistent_workers=False, worker_init_fn=_quiet_worker)

    def train_batches(self, batch_size: int, generator=None, *, rank: int = 0, world: int = 1,
                      epoch: int = 0, device="cpu"):
        """Normalised float batches of ``batch_size // world`` images for this rank."""
        yield from _reraise(self._loader(True, batch_size // world, rank, world, epoch), device)

    def eval_batches(self, batch_size: int, *, rank: int = 0, world: int = 1, device="cpu"):
        yield from _reraise(self._loader(False, batch_size, rank, world, 0), device)

    def __repr__(self) -> str:
        return (f"ImageFolderData({self.name}, train={len(self._train)}, "
                f"{self.eval_split}={len(self._test)}, classes={self.num_classes}, size={self.size})")


# The signals a terminal or ``kill -PGID`` sends to a whole process group.
_GROUP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _start_workers(loader):
    """``iter(loader)``, its workers forked with the group signals blocked: one sent to the
    group before a new worker has left it stays pending there, for ``_quiet_worker`` to drop
    (here it is delivered as soon as the mask is restored)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _GROUP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _quiet_worker(worker_id: int) -> None:
    """Each DataLoader worker leaves the main process's process group, so a signal to the group
    (Ctrl-C in a terminal, ``kill -TERM -PGID``) reaches only the main process, which stops at
    its next safe point (needing the workers alive until then) and shuts them down without each
    printing a traceback. A SIGTERM sent to the worker itself still ends it, as PyTorch and
    multiprocessing expect when they clean up (a worker ignoring that would leave its main
    process waiting at exit forever); a worker that outlives its main process notices and
    exits (PyTorch's worker watchdog)."""
    del worker_id
    os.setpgid(0, 0)
    for s in signal.sigpending() & _GROUP_SIGNALS:  # sent to the group while forking
        signal.sigwait({s})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _GROUP_SIGNALS)


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, target = self.samples[i]
        return self.transform(_checked_loader(path)), target


def _reraise(loader, device):
    """Iterate a DataLoader; a worker's UserError comes back as its own one-line message, raised
    once the workers are shut down (the worker's re-raised exception sits in a reference cycle
    with the iterator, which would otherwise keep them up until the garbage collector runs)."""
    it = _start_workers(loader)
    while True:
        msg = None
        try:
            x, y = next(it)
        except StopIteration:
            return
        except UserError as exc:
            lines = [ln for ln in str(exc).splitlines() if "image" in ln and "UserError" in ln]
            msg = lines[-1].split("UserError: ", 1)[-1] if lines else first_line(exc)
        if msg is not None:
            getattr(it, "_shutdown_workers", lambda: None)()  # what the iterator's __del__ calls
            raise UserError(msg)
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _split(samples: list[tuple[str, int]], fraction: float, seed: int = 0):
    """Stratified, seeded split of (path, label) pairs: (kept, held out), each in file order."""
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, (_, t) in enumerate(samples):
        by_class.setdefault(int(t), []).append(i)
    kept, held = [], []
    for idx in by_class.values():
        perm = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
        k = max(1, round(len(perm) * fraction)) if len(perm) > 1 else 0
        held += perm[:k]
        kept += perm[k:]
    return [samples[i] for i in sorted(kept)], [samples[i] for i in sorted(held)]
