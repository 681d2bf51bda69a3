"""Opening image files with bounds: one helper for training folders, ``eval`` and ``predict``.

``open_image(path)`` reads only the header first and refuses an image whose width x height
exceeds ``MAX_IMAGE_PIXELS`` before any pixel is decoded (a 109 KB PNG can claim
30000 x 30000 pixels, 2.7 GB decoded). It returns a decoded PIL image in a mode the
transforms understand: ``L`` (8-bit grey) or ``RGB``; transparency is composited on
white (as a viewer shows it), 16-bit grey is scaled to 8 bits (PIL's ``convert`` would
clip at 255), and a float image with NaN or infinite pixels is refused. Every refusal is
a ``UserError`` naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError, first_line

MAX_IMAGE_PIXELS = 1 << 26  # 67,108,864 pixels (8192 x 8192); checked from the header


def open_image(path: str | os.PathLike, *, max_pixels: int = MAX_IMAGE_PIXELS):
    """Decode ``path`` into a PIL image of mode ``L`` or ``RGB`` (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise UserError(f"open_image: path must be a file name (str or os.PathLike), got {path!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise UserError(f"open_image: max_pixels must be a positive integer, got {max_pixels!r}")
    path = Path(path)
    if not path.exists():
        raise UserError(f"image {path} not found")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an image file")
    try:
        with Image.open(path) as img:
            w, h = img.size  # from the header: nothing decoded yet
            if w * h > max_pixels:
                raise UserError(f"image {path} claims {w} x {h} pixels, more than the limit of "
                                f"{max_pixels:,} (a decompression bomb?)")
            img.load()
            return _plain_mode(img, path)
    except UserError:
        raise
    except Image.DecompressionBombError:  # PIL's own check, at twice its limit, at open
        raise UserError(f"image {path} claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, more "
                        f"than the limit of {max_pixels:,} (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot decode image {path}: {first_line(exc)}") from None


def _plain_mode(img, path: Path):
    """Any PIL mode -> ``L`` or ``RGB`` without clipping or inventing values."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    if img.mode == "F":
        if not np.isfinite(np.asarray(img)).all():
            raise UserError(f"image {path} has non-finite (NaN/inf) pixel values")
        return img.convert("L")
    if img.mode == "I" or img.mode.startswith("I;16"):
        wide = np.asarray(img, dtype=np.float64) / 257.0  # 16 bit -> 8 bit
        return Image.fromarray(wide.clip(0, 255).round().astype(np.uint8), mode="L")
    if img.mode in ("L", "RGB"):
        return img.copy()
    if img.mode in ("1",):
        return img.convert("L")
    return img.convert("RGB")
