"""The evaluation transform a dataset owns, stored with every checkpoint.

``EvalTransform`` is the one preprocessing path from an image to the model's input: the
dataset builds it (``dataset.eval_transform``), the training loop evaluates through it and
stores ``transform.to_dict()`` in every checkpoint under ``meta["transform"]``, and
``eval``, ``predict`` and the ONNX export rebuild it with
``EvalTransform.from_meta(meta)`` (which also reads checkpoints written before the key
existed, from their ``input_size``/``mean``/``std``/``classes``).

``apply(image)`` takes a PIL image (any mode; see ``data/images.py`` for opening files with
bounds) or a uint8 tensor C x H x W or N x C x H x W and returns float32 of the same rank:

1. channels: to ``channels`` (3 -> 1 by ITU-R 601 luma as PIL's ``convert("L")``, 1 -> 3 by
   repeating);
2. size: with ``resize > 0``, the shorter side is resized to ``resize`` px and the centre
   ``H x W`` cropped (torchvision's ImageNet evaluation, ``resize = size * 256 / 224``);
   with ``resize == 0`` the image is resized straight to ``H x W`` (the in-memory datasets,
   whose images all have that size already). Bilinear, antialiased when shrinking;
3. ``(x / 255 - mean) / std`` per channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import UserError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, the weights of PIL's convert("L")


@dataclass(frozen=True)
class EvalTransform:
    input_size: tuple[int, int, int]  # C, H, W the model takes
    mean: tuple[float, ...]  # per channel, [0, 1] units
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()  # class names in label order
    resize: int = 0  # px of the shorter side before the centre crop; 0 = straight to H x W

    def __post_init__(self):
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 3 or min(size) < 1:
            raise UserError(f"transform input_size must be three positive integers C,H,W, got {self.input_size!r}")
        if size[0] not in (1, 3):
            raise UserError(f"transform channels must be 1 or 3, got {size[0]}")
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != size[0] or len(std) != size[0]:
            raise UserError(f"transform mean and std need {size[0]} values each, got {len(mean)} and {len(std)}")
        if not all(v == v and abs(v) < float("inf") for v in mean) or not all(0 < v < float("inf") for v in std):
            raise UserError(f"transform mean must be finite and std positive, got {mean} and {std}")
        if int(self.resize) < 0:
            raise UserError(f"transform resize must be >= 0, got {self.resize}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "resize", int(self.resize))

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def crop(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict) -> EvalTransform:
        if not isinstance(values, dict):
            raise UserError(f"transform must be a table, got {type(values).__name__}")
        unknown = set(values) - {"input_size", "mean", "std", "classes", "resize"}
        if unknown:
            raise UserError(f"transform has unknown keys {sorted(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"damaged transform {values!r}: {exc}") from None

    @classmethod
    def from_meta(cls, meta: dict) -> EvalTransform:
        """A checkpoint's transform (``meta["transform"]``, else its older separate fields)."""
        if "transform" in meta:
            return cls.from_dict(meta["transform"])
        return cls(tuple(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]),
                   tuple(meta.get("classes") or ()), 0)

    def pixels(self, image) -> torch.Tensor:
        """Steps 1-2: float32 in [0, 1], ``channels x H x W`` (or N x ...)."""
        x = self._channels(_as_uint8(image)).float().div_(255.0)
        batched = x.ndim == 4
        x = x if batched else x.unsqueeze(0)  # N x C x h x w
        x = self._size(x).clamp_(0.0, 1.0)  # N x C x H x W
        return x if batched else x[0]

    def apply(self, image) -> torch.Tensor:
        """Steps 1-3: the model's input (see the module docstring)."""
        x = self.pixels(image)
        shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype).view(shape)
        return (x - mean) / std

    __call__ = apply

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-3]
        if c == self.channels:
            return x
        if c == 3 and self.channels == 1:
            w = torch.tensor(LUMA, dtype=torch.float32).view(3, 1, 1)
            return (x.float() * w).sum(-3, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
        if c == 1 and self.channels == 3:
            return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
        raise UserError(f"cannot turn a {c}-channel image into {self.channels}-channel input")

    def _size(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        if self.resize == 0:
            if tuple(x.shape[-2:]) == self.crop:
                return x
            return TF.resize(x, list(self.crop), antialias=True)
        if min(x.shape[-2:]) != self.resize:
            x = TF.resize(x, self.resize, antialias=True)  # shorter side -> resize
        return TF.center_crop(x, list(self.crop))


def _as_uint8(image) -> torch.Tensor:
    """A PIL image (L/RGB after ``data.images``; other modes converted) or a uint8 tensor."""
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim not in (3, 4):
            raise UserError(f"transform expects a uint8 C x H x W or N x C x H x W tensor, got "
                            f"{image.dtype} with shape {tuple(image.shape)}")
        return image
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise UserError(f"transform expects a PIL image or a uint8 tensor, got {type(image).__name__}")
    from torchvision.transforms.functional import pil_to_tensor

    if image.mode not in ("L", "RGB"):
        from .images import _plain_mode

        image = _plain_mode(image, "<image>")
    return pil_to_tensor(image)
