"""Image files that lie about their size: headers claiming more (or less, or nothing) than the
data holds, formats that hide the size in a second place (a GIF frame larger than its
screen), a thin strip that is small on one side only. Each is refused from its header in
one line before pixels are decoded, or decodes to what its header says; through
``open_image`` (training folders, ``eval``, ``predict``) and through ``predict``.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest

from cnnarch.data.images import MAX_IMAGE_PIXELS, open_image
from cnnarch.errors import UserError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, rows: bytes | None = None, depth: int = 8, colour: int = 0,
        interlace: int = 0, chunks: int = 1) -> bytes:
    """A PNG whose IHDR says width x height (grey unless ``colour`` says otherwise); ``rows``:
    the (filtered) pixel rows it holds, their zlib stream cut into ``chunks`` IDAT chunks."""
    if rows is None:
        rows = b"".join(b"\x00" + bytes(width * depth // 8) for _ in range(height))
    stream = zlib.compress(rows)
    cut = [stream[i * len(stream) // chunks:(i + 1) * len(stream) // chunks] for i in range(chunks)]
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
            + b"".join(_chunk(b"IDAT", part) for part in cut) + _chunk(b"IEND", b""))


def _adam7_rows(width: int, height: int, bytes_per_pixel: int, keep: float = 1.0) -> bytes:
    """Filtered scanlines of an interlaced image's seven passes; ``keep``: the share kept."""
    from cnnarch.data.images import _png_raw_size

    full = _png_raw_size(width, height, 8 * bytes_per_pixel, interlaced=True)
    return bytes(int(full * keep))  # all-zero bytes: filter type 0, black pixels


def gif_with_frame(width: int, height: int) -> bytes:
    """An 8 x 8 GIF whose first frame's descriptor claims width x height."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    at = data.index(b"\x2c")  # the image descriptor
    data[at + 5:at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc0")  # start of frame: height, width
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


REFUSED = {  # name -> (file bytes, what the one line says)
    "PNG claiming 30000 x 30000": (png(30000, 30000, rows=b"\x00"), "claims more than"),
    "PNG strip 1 x 70,000,000": (png(1, 70_000_000, rows=b"\x00"), "claims 1 x 70000000"),
    "PNG just over the bound": (png(8193, 8192, rows=b"\x00"), "claims 8193 x 8192"),
    "GIF frame 9000 x 9000 on an 8 x 8 screen": (gif_with_frame(9000, 9000), "9000 x 9000"),
    "GIF frame 20000 x 20000": (gif_with_frame(20000, 20000), "claims more than"),
    "JPEG claiming 60000 x 60000": (jpeg_claiming(60000, 60000), "claims more than"),
    "PNG claiming 0 x 8": (png(0, 8, rows=b""), "cannot decode"),
    "PNG with its pixel data cut off": (png(64, 64)[:60], "truncated"),
}
SHORT_ROWS = "PNG claiming 64 x 64 holding 4 rows"  # Pillow fills the missing rows with zeros
REFUSED[SHORT_ROWS] = (png(64, 64, rows=b"".join(b"\x00" + bytes(64) for _ in range(4))), "rows missing")
REFUSED["RGB PNG holding 63 of its 64 rows"] = (
    png(64, 64, rows=b"".join(b"\x00" + bytes(192) for _ in range(63)), colour=2), "rows missing")
REFUSED["PNG holding 1 of its 64 rows"] = (png(64, 64, rows=b"\x00" + bytes(64)), "rows missing")
# PIL notices some short streams itself ("image file is truncated"), not all of them
REFUSED["PNG one byte short of its last row"] = (png(64, 64, rows=bytes(65 * 64 - 1)), "cannot decode")
REFUSED["RGB PNG short by a row, in 5 IDAT chunks"] = (
    png(16, 16, rows=bytes((1 + 48) * 15), colour=2, chunks=5), "cannot decode")
REFUSED["interlaced PNG missing its last pass"] = (
    png(32, 32, rows=_adam7_rows(32, 32, 1, keep=0.5), interlace=1), "cannot decode")
REFUSED["16-bit PNG holding 8-bit rows"] = (png(16, 16, rows=bytes(17 * 16), depth=16), "cannot decode")
COMPLETE = {  # controls: PNGs whose pixel data is whole decode
    "one IDAT": png(64, 64),
    "7 IDAT chunks": png(16, 16, rows=bytes((1 + 48) * 16), colour=2, chunks=7),
    "interlaced": png(32, 32, rows=_adam7_rows(32, 32, 1), interlace=1),
    "interlaced, odd size": png(13, 7, rows=_adam7_rows(13, 7, 3), colour=2, interlace=1),
    "16-bit": png(16, 16, rows=bytes(33 * 16), depth=16),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_lying_image_is_refused_in_one_line(tmp_path, case):
    data, needle = REFUSED[case]
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(UserError) as info:
        open_image(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and needle in msg, msg


@pytest.mark.parametrize("case", list(COMPLETE))
def test_png_with_whole_pixel_data_decodes(tmp_path, case):
    path = tmp_path / "x.png"
    path.write_bytes(COMPLETE[case])
    img = open_image(path)
    assert img.mode in ("L", "RGB") and img.size[0] * img.size[1] > 0


def test_pngs_pil_writes_decode(tmp_path):
    """Control: the row check agrees with real encoders (PIL's, any mode, optimised)."""
    from PIL import Image

    rng = __import__("numpy").random.default_rng(0)
    for i, (mode, size) in enumerate([("L", (31, 17)), ("RGB", (64, 3)), ("RGBA", (5, 40)), ("1", (9, 9)),
                                      ("P", (20, 20)), ("I;16", (7, 11))]):
        arr = rng.integers(0, 255, (size[1], size[0], 4 if mode == "RGBA" else 3), dtype="uint8")
        img = Image.fromarray(arr[..., :4] if mode == "RGBA" else arr, "RGBA" if mode == "RGBA" else "RGB")
        img = img if mode in ("RGB", "RGBA") else img.convert(mode)
        path = tmp_path / f"{i}.png"
        img.save(path, optimize=True)
        assert open_image(path).size == size


def test_png_holding_more_than_it_claims_decodes_what_it_claims(tmp_path):
    """A 8 x 8 header over 4096 x 4096 rows of data: the extra bytes are never decoded."""
    path = tmp_path / "x.png"
    path.write_bytes(png(8, 8, rows=b"".join(b"\x00" + bytes(4096) for _ in range(4096))))
    img = open_image(path)
    assert img.size == (8, 8) and img.mode == "L"


def test_the_bound_itself_decodes(tmp_path):
    """Control: an image of exactly the bound's pixels in a thin shape passes the check."""
    path = tmp_path / "x.png"
    path.write_bytes(png(MAX_IMAGE_PIXELS // 4, 4))
    assert open_image(path).size == (MAX_IMAGE_PIXELS // 4, 4)


@pytest.mark.parametrize("case", ["GIF frame 9000 x 9000 on an 8 x 8 screen", "JPEG claiming 60000 x 60000"])
def test_predict_refuses_lying_images_in_one_line(cli, user_error, tiny_run, tmp_path, case):
    path = tmp_path / "x.png"
    path.write_bytes(REFUSED[case][0])
    user_error(cli(["predict", str(tiny_run), str(path)]), str(path))


def test_image_folder_with_a_lying_image_is_one_line(tmp_path):
    from PIL import Image

    from cnnarch.data import load_dataset

    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(6):
            Image.new("L", (8, 8), 40 * c + i).save(tmp_path / f"c{c}" / f"{i}.png")
    (tmp_path / "c1" / "liar.png").write_bytes(gif_with_frame(9000, 9000))
    with pytest.raises(UserError, match="liar.png"):
        data = load_dataset(f"imagefolder:{tmp_path}", workers=0, image_size=8)
        for _ in data.train_batches(4):
            pass
        for _ in data.eval_batches(4):
            pass
