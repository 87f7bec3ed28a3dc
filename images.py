"""Image files in and out: the walk that finds images below a folder, decoding any file PIL reads to
8-bit L or RGB (upright, refused from its header when too large), full-size pages read a band of rows at a
time, and the PNG writer and its tEXt reader.

Nothing here knows a task, a dataset layout or a network.
"""
import math
import os
import stat
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from utils import one_line, shown, temporary_beside

# A truncated file must raise (so it is reported or skipped), not decode half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


# ----------------------------------------------------------------------------------------------------
# The walk


def is_image_file(path):
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS and not Path(path).name.startswith(".")


def _folder_id(path):
    st = os.stat(path)  # through links: the folder a link leads to
    return st.st_dev, st.st_ino


def _skip_folder(path, why):
    print(f"warning: skipped folder {shown(path)}: {why}", file=sys.stderr)
    return False


def _enter(path, seen, avoided):
    """Whether a walk enters the folder `path`: once per real folder, never into `avoided`; why not is
    reported in one line."""
    try:
        folder = _folder_id(path)
    except OSError as e:
        return _skip_folder(path, one_line(e))
    if folder in avoided:
        return _skip_folder(path, "it leads to the output folder")
    if folder in seen:
        why = "a link loop or a second link"
        return _skip_folder(path, f"it leads to {os.path.realpath(path)}, walked already ({why})")
    seen.add(folder)
    return True


def _regular(path):
    """Whether path (through links) is a regular file; a FIFO, socket or device named like an image is
    reported in one line: opening a FIFO would wait for a writer forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        print(f"warning: skipped {shown(path)}: {one_line(e)}", file=sys.stderr)
        return False
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        print(f"warning: skipped {shown(path)}: {kind}", file=sys.stderr)
        return False
    return True


def list_images(root, avoid=()):
    """Every image file below root (or root itself if it is a file), sorted, at any depth, under the
    names it has in the tree. Links are followed, but each real folder is entered once: a link back up
    the tree (a loop) or to a folder walked already is reported in one line and skipped, and so are the
    folders in `avoid` (generate.py's output), folders that cannot be listed and names of images that are
    not regular files."""
    root = Path(root)
    if not root.is_dir():
        return [root] if is_image_file(root) and _regular(root) else []
    seen, avoided = {_folder_id(root)}, {_folder_id(p) for p in avoid if Path(p).is_dir()}
    files = []
    walk = os.walk(root, followlinks=True, onerror=lambda e: _skip_folder(e.filename, one_line(e)))
    for dirpath, dirnames, filenames in walk:
        names, entered = sorted(d for d in dirnames if not d.startswith(".")), set()
        for name in sorted(names, key=lambda d: os.path.islink(os.path.join(dirpath, d))):  # the tree's own first
            if _enter(Path(dirpath) / name, seen, avoided):
                entered.add(name)
        dirnames[:] = [d for d in names if d in entered]
        files += [Path(dirpath) / f for f in sorted(filenames) if is_image_file(f) and _regular(Path(dirpath) / f)]
    return files


# ----------------------------------------------------------------------------------------------------
# Decoding


def to_8bit(img):
    """Any PIL mode -> 8-bit L (grays) or RGB (the rest): a gray 100-megapixel scan stays 100 MB where
    RGB would take 400 (Pillow keeps RGB in 4 bytes a pixel). Transparency is composited on white (a
    comic page's paper colour)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greys: PIL's convert("L") clips at 255 instead of scaling, so scale ourselves.
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("1", "L"):
        return img.convert("L") if img.mode == "1" else img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img if img.mode == "RGB" else img.convert("RGB")


def to_rgb(img):
    """Any PIL mode -> 8-bit RGB (see to_8bit)."""
    img = to_8bit(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(fp, max_pixels=None):
    """Image.open, which reads the header only. With max_pixels, that limit replaces Pillow's own
    decompression-bomb check: a larger image is refused from its header, before anything is decoded (a
    30000x30000 one-bit PNG is 100 KB on disk and 900 MB decoded), and a smaller one is not warned about."""
    if max_pixels is None:
        return Image.open(fp)
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        img = Image.open(fp)
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    w, h = img.size
    if w * h > max_pixels:
        raise ValueError(f"{w}x{h} is {w * h / 1e6:.3g} megapixels, over the limit of {max_pixels / 1e6:.3g}")
    return img


def load_upright(path, min_side=None, max_pixels=None):
    """Decode an image file as it is displayed (EXIF orientation applied), in its own mode; raises
    OSError/ValueError/etc. if it cannot be read. max_pixels: see open_image.

    min_side lets a JPEG decode at a reduced scale (1/2, 1/4, 1/8) while its shorter side stays at least
    min_side pixels: a 3000-pixel scan that will be resized to 286 decodes several times faster.
    """
    with open(path, "rb") as f:  # our own file object: closing it leaves the decoded pixels alive
        img = open_image(f, max_pixels)
        if min_side and img.format == "JPEG":
            scale = min_side / min(img.size)
            img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # in place: a large page is not copied
    return img


def load_image(path, min_side=None, max_pixels=None):
    """load_upright as 8-bit RGB."""
    return to_rgb(load_upright(path, min_side, max_pixels))


def try_load_image(path, min_side=None):
    """load_image, or (None, reason) for a file that is empty, truncated, not an image or otherwise broken."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return load_image(path, min_side), None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) on bad files
        return None, one_line(e)


def resize_shorter(img, side, resample=Image.BICUBIC):
    """Resize a PIL image so that its shorter side is `side` pixels, keeping the aspect ratio."""
    w, h = img.size
    scale = side / min(w, h)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    return img if size == (w, h) else img.resize(size, resample, reducing_gap=3.0)


def center_square(img, size):
    """The largest centered square, bicubic to size x size (CelebA's usual preprocessing: 178x178 of 178x218)."""
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)


def pil_to_tensor(img):
    """PIL RGB -> uint8 tensor (3, H, W): the workers hand over bytes, the device does the float maths."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


# ----------------------------------------------------------------------------------------------------
# Pages at full resolution (generate.py). Each image is decoded twice: for its network input (a JPEG only
# at the scale that needs) and again for its output, which is put together a band of rows at a time. A
# process so holds one page at a time whatever the batch, and never a float copy of a page.

BAND_PIXELS = 2**20  # the full-resolution float work, a few dozen bytes a pixel, runs on this many at a time


def read_page(src, max_pixels, min_side=None):
    """An image file -> the page upright, in L or RGB; refused from its header when over max_pixels."""
    return to_8bit(load_upright(src, min_side, max_pixels))


def bands(page):
    """(first row, uint8 rows) for consecutive bands of an L or RGB page: (rows, W) or (rows, W, 3)."""
    rows = max(1, BAND_PIXELS // page.width)
    for top in range(0, page.height, rows):
        yield top, np.asarray(page.crop((0, top, page.width, min(page.height, top + rows))))


def as_rgb(band):
    return band if band.ndim == 3 else np.repeat(band[..., None], 3, axis=2)


# ----------------------------------------------------------------------------------------------------
# PNG


def save_png(tensor, path):
    """Save a (3, H, W) float tensor in [0, 1] as an 8-bit PNG, atomically."""
    array = (tensor.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    save_array_png(array, path)


def save_array_png(array, path):
    """Save an (H, W, 3) uint8 array as a PNG, atomically."""
    with PngWriter(path, array.shape[1], array.shape[0]) as png:
        png.write(array)


# PNGs are written here rather than by Pillow: on a 1200x1700 panel Pillow's encoder takes 0.24 s at
# zlib level 1, half of it choosing a filter for every row, all of it holding the GIL; the Up filter
# and zlib's run-length strategy take about 0.08 s for a 10% smaller file, and a page is written in bands.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEADER = struct.Struct(">IIBBBBB")  # width, height, bit depth, colour type, compression, filter, interlace
PNG_RGB8 = (8, 2, 0, 0, 0)  # 8-bit truecolour, deflate, adaptive filtering, no interlace
PNG_FILTER_UP = 2  # each byte minus the one above it: flat and slowly varying areas become runs of zeros
PNG_COMPRESS_LEVEL = 1  # the run-length strategy ignores it; zlib's default at level 6 takes 7x as long for 14% less


class PngWriter:
    """An 8-bit RGB PNG written a band of rows at a time: `with PngWriter(path, W, H) as png:
    png.write(rows)`. The rows go to a temporary file that replaces `path` when the block ends without
    an error and is deleted when it does not, so a crash never leaves half an image. `text`: {keyword:
    text} written as tEXt chunks before the pixels (png_text reads them back)."""

    def __init__(self, path, width, height, text=None):
        self.path, self.width, self.height, self.text = Path(path), width, height, text or {}

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file, self.tmp = temporary_beside(self.path)
        self.deflate = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        self.above = np.zeros((self.width, 3), np.uint8)  # the Up filter sees zeros above the first row
        self.rows = 0
        self.file.write(PNG_SIGNATURE)
        self._chunk(b"IHDR", PNG_HEADER.pack(self.width, self.height, *PNG_RGB8))
        for keyword, text in self.text.items():
            self._chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text.encode("latin-1"))
        return self

    def write(self, rows):
        """rows: (n, width, 3) uint8, the next n rows of the image."""
        filtered = np.empty((len(rows), 1 + self.width * 3), np.uint8)
        filtered[:, 0] = PNG_FILTER_UP
        pixels = filtered[:, 1:].reshape(rows.shape)  # a view: rows of any layout are filtered in one pass
        np.subtract(rows[0], self.above, out=pixels[0])
        np.subtract(rows[1:], rows[:-1], out=pixels[1:])
        self.above = rows[-1].copy()
        self.rows += len(rows)
        self._chunk(b"IDAT", self.deflate.compress(filtered))

    def __exit__(self, error_type, error, traceback):
        complete = False
        try:
            if error_type is None:
                if self.rows != self.height:
                    raise ValueError(f"{self.rows} rows written to a PNG of height {self.height}")
                self._chunk(b"IDAT", self.deflate.flush())
                self._chunk(b"IEND", b"")
                complete = True
        finally:
            self.file.close()
            if complete:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)

    def _chunk(self, kind, data):
        if data or kind != b"IDAT":  # zlib may hold a whole band back: no empty chunks
            self.file.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))


def png_text(path, keyword):
    """The text of a PNG's tEXt chunk `keyword` that comes before its pixels (as PngWriter writes it), or
    None: reads the chunks' headers only, never the pixels."""
    try:
        with open(path, "rb") as f:
            if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                return None
            while True:
                length, kind = struct.unpack(">I4s", f.read(8))
                if kind in (b"IDAT", b"IEND"):
                    return None
                data = f.read(length)
                f.seek(4, os.SEEK_CUR)  # the CRC
                name, _, text = data.partition(b"\0")
                if kind == b"tEXt" and name == keyword.encode("latin-1"):
                    return text.decode("latin-1")
    except (OSError, struct.error):
        return None
