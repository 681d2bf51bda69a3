"""Opening image files with bounds: one helper for training folders, ``eval`` and ``predict``.

``open_image(path)`` reads only the header first and refuses an image whose width x height
exceeds ``MAX_IMAGE_PIXELS`` before any pixel is decoded (a 109 KB PNG can claim
30000 x 30000 pixels, 2.7 GB decoded). It returns a decoded PIL image in a mode the
transforms understand: ``L`` (8-bit grey) or ``RGB``; transparency is composited on
white (as a viewer shows it), 16-bit grey is scaled to 8 bits (PIL's ``convert`` would
clip at 255), and a float image with NaN or infinite pixels is refused. A PNG whose pixel
data ends before its last row is refused too: PIL decodes such a file without an error,
the missing rows zero-filled, so ``_png_rows_missing`` counts the inflated bytes against
what the header promises (PNG spec, 7.2 scanlines and 8.2 Adam7 passes). Every refusal is
a ``UserError`` naming the path.
"""

from __future__ import annotations

import os
import struct
import zlib
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
            if img.format == "PNG" and (short := _png_rows_missing(path)):
                got, need = short
                raise UserError(f"cannot decode image {path}: its pixel data ends after {got:,} of "
                                f"the {need:,} bytes its header promises (rows missing)")
            return _plain_mode(img, path)
    except UserError:
        raise
    except Image.DecompressionBombError:  # PIL's own check, at twice its limit, at open
        raise UserError(f"image {path} claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, more "
                        f"than the limit of {max_pixels:,} (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot decode image {path}: {first_line(exc)}") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel (PNG spec, 6.1)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_raw_size(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (one filter byte per row) the IHDR promises."""
    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits_per_pixel + 7) // 8)
    if not interlaced:
        return rows(width, height)
    return sum(rows(-(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0)
               for x0, y0, dx, dy in _ADAM7)


def _png_rows_missing(path: Path) -> tuple[int, int] | None:
    """(bytes inflated, bytes promised) when the IDAT stream holds fewer scanline bytes than
    the IHDR promises, else None. Inflates at most what is promised (no bomb)."""
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        need, got, inflate = None, 0, zlib.decompressobj()
        while len(head := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR" and length == 13:
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", f.read(13))
                need = _png_raw_size(width, height, depth * _PNG_SAMPLES.get(colour, 1), interlace == 1)
                f.seek(4, os.SEEK_CUR)
            elif kind == b"IDAT" and need is not None:
                if need == 0:  # max_length 0 would mean "no limit"
                    return None
                got += len(inflate.decompress(f.read(length), need - got))
                if got >= need:
                    return None
                f.seek(4, os.SEEK_CUR)
            elif kind == b"IEND":
                break
            else:
                f.seek(length + 4, os.SEEK_CUR)
        return None if need is None or got >= need else (got, need)


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
