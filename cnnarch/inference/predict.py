"""Prediction on image files, through the checkpoint's own evaluation transform.

The transform is the one the dataset evaluated with during training (stored in the
checkpoint, :class:`cnnarch.data.transform.EvalTransform`), so ``predict`` sees an image
exactly as ``eval`` does: converted to the model's channels, resized (and centre-cropped
where the dataset crops), normalised with its mean and std.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import UserError


def load_image(path: str | os.PathLike, in_chans: int, size: tuple[int, int]) -> torch.Tensor:
    """Decode an image file of any size and mode into a float C x H x W tensor in [0, 1]:
    converted to ``in_chans`` channels (1: luminance, 3: RGB), resized straight to ``size``
    (H, W), bilinear, antialiased when shrinking. No normalisation."""
    from ..data.images import open_image
    from ..data.transform import EvalTransform

    if in_chans not in (1, 3):
        raise UserError(f"cannot turn image files into {in_chans}-channel input")
    h, w = size
    pixels_only = EvalTransform((in_chans, h, w), (0.0,) * in_chans, (1.0,) * in_chans)
    return pixels_only.pixels(open_image(path))


def predict_files(model: nn.Module, transform, paths, *, top_k: int = 5,
                  device: str | torch.device = "cpu") -> list[dict]:
    """Top-k classes with softmax probabilities for image files.

    ``transform``: the checkpoint's :class:`~cnnarch.data.transform.EvalTransform` (or its
    metadata dict, read with ``EvalTransform.from_meta``). Returns one dict per image:
    ``{"image": path, "top": [{"class": index, "name": name, "prob": p}, ...]}``.
    """
    from ..data.images import open_image
    from ..data.transform import EvalTransform

    if top_k < 1:
        raise UserError(f"top_k must be >= 1, got {top_k}")
    if not isinstance(transform, EvalTransform):
        transform = EvalTransform.from_meta(transform)
    images = torch.stack([transform(open_image(p)) for p in paths])  # N x C x H x W
    if not torch.isfinite(images).all():
        raise UserError("non-finite input after normalisation: the checkpoint's mean/std are damaged")
    model = model.to(device).eval()
    with torch.no_grad():
        probs = torch.softmax(model(images.to(device)).float(), dim=1).cpu()  # N x classes
    if not torch.isfinite(probs).all():
        raise UserError("the model gave non-finite outputs: the checkpoint's weights are damaged")
    return _top_k(paths, probs, min(top_k, probs.shape[1]), transform.classes)


def _top_k(paths, probs: torch.Tensor, k: int, classes) -> list[dict]:
    top_p, top_i = probs.topk(k, dim=1)
    return [{"image": os.fspath(path),
             "top": [{"class": i, "name": classes[i] if i < len(classes) else str(i), "prob": p}
                     for p, i in zip(ps, idx, strict=True)]}
            for path, ps, idx in zip(paths, top_p.tolist(), top_i.tolist(), strict=True)]


def format_predictions(results: list[dict]) -> str:
    """One line per image: ``path: name prob, name prob, ...``."""
    return "\n".join(f"{r['image']}: " + ", ".join(f"{t['name']} {t['prob']:.3f}" for t in r["top"])
                     for r in results)
