"""What both tasks and both scripts share: image reading and the folder walk, full-size pages read a band
of rows at a time, the PNG writer, the metrics both tasks report, checkpoint and log files, plots,
devices, precision and the torchrun set-up.

Nothing here knows a task (colorize.py, inpaint.py), a dataset layout (classes.py) or a network (model.py).
"""
import argparse
import csv
import errno
import io
import json
import math
import os
import stat
import secrets
import struct
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps

# A truncated file must raise (so it is reported or skipped), not decode half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


# ----------------------------------------------------------------------------------------------------
# Image I/O


def one_line(error):
    """An exception as one line for a report, its first sentence: 'OSError: image file is truncated'."""
    text = str(error).strip().split(". ")[0].splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def shown(path):
    """A path as text that can always be printed or written to a UTF-8 file: bytes of a file name that
    are not UTF-8 appear as \\xNN escapes instead of stopping the program."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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


# ----------------------------------------------------------------------------------------------------
# Metrics on images in [0, 1], one value per image

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def psnr_of_mse(mse):
    """PSNR in dB of a mean squared error of values in [0, 1] (10 log10(255^2 / MSE) on the 8-bit scale)."""
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def psnr(a, b):
    return psnr_of_mse(l2(a, b))


def ssim(a, b):
    """Mean SSIM per image with an 11x11 Gaussian window (sigma 1.5), on each channel, 'valid' borders."""
    window = min(SSIM_WINDOW, a.shape[-1], a.shape[-2])
    g = torch.exp(-((torch.arange(window, device=a.device) - window // 2) ** 2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(a.shape[1], 1, window, window).to(a)

    def blur(t):
        return F.conv2d(t, kernel, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return s.flatten(1).mean(1)


def l2(a, b):
    """Mean squared error per image: the Context Encoder paper's 'mean L2' on images in [0, 1]."""
    return ((a - b) ** 2).flatten(1).mean(1)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def temporary_name(path):
    """A hidden name beside path, of this process alone (two processes writing one file never share a
    temporary file), in the same folder so that os.replace onto path is atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def temporary_beside(path):
    """(open binary file, its path): a new temporary file for path (temporary_name), created with the
    permissions any new file gets (the umask's), not mkstemp's private ones."""
    tmp = temporary_name(path)
    return os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"), tmp


def write_atomic(path, write):
    """write(file) into a temporary file beside path, then rename it over path: a crash never leaves half
    a file and a failed write never leaves the temporary one. A failed write (a full disk) exits with one
    line; the file it was to replace is left as it was."""
    path = Path(path)
    f, tmp = temporary_beside(path)
    try:
        with f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        full = " (the disk is full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise SystemExit(f"error: cannot write {shown(path)}: {e.strerror or one_line(e)}{full}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text):
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(state, path):
    """torch.save, atomically (write_atomic): a crash or a full disk never leaves a broken last.pt."""
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint dict (weights_only: a checkpoint can never run code), or exit with one line."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"error: checkpoint {path} does not exist")
    except Exception as e:
        raise SystemExit(f"error: cannot read checkpoint {path}: {one_line(e)}")


def read_weights(path):
    """A checkpoint's tensors, memory-mapped where the file allows it, or ValueError in one line."""
    if not path.is_file():
        raise ValueError("no such file")
    try:
        # mmap: only the tensors that are used are read, never the optimizer state of a training
        # checkpoint; torch can map only the zipfile format, the legacy one is read whole.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # unpickling raises many types on a file that is not a checkpoint
        raise ValueError(f"not a PyTorch checkpoint ({one_line(e)})") from None


def assign_weights(net, state_dict):
    """Load state_dict into `net` built on the meta device (no time spent on a random init), as float32,
    -> net in eval mode; ValueError in one line if the weights do not fit."""
    expected = net.state_dict()
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise ValueError("the generator weights are not all tensors")
    missing, unexpected = sorted(expected.keys() - state_dict.keys()), sorted(state_dict.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state_dict.keys() if expected[k].shape != state_dict[k].shape)
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", wrong)):
        if keys:
            more = ", ..." if len(keys) > 3 else ""
            raise ValueError(f"the weights do not fit a {type(net).__name__}: "
                             f"{len(keys)} {what} ({', '.join(keys[:3])}{more})")
    net.load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in state_dict.items()}, assign=True)
    return net.eval()


# ----------------------------------------------------------------------------------------------------
# Logs and plots


def write_csv(path, rows):
    """(Re)write a CSV file with these rows (dicts; the header is every key, in order of appearance),
    atomically; with no rows, remove it."""
    if not rows:
        Path(path).unlink(missing_ok=True)
        return
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_scores(rows, means, csv_path, json_path, **about):
    """Per-image scores (a CSV row each) and their means with what they are about (JSON)."""
    write_csv(csv_path, rows)
    write_json(json_path, {**about, **means})


def read_csv(path):
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_metrics(rows, path):
    """Losses (left) and validation metrics (right) against the step, one PNG redrawn at every validation."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training server
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [("loss_", "losses"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM")]
    for ax, (prefix, title) in zip(axes, panels):
        for key in rows[0]:
            if prefix in key:
                values = [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows]
                style = "--" if key.startswith("baseline") else "-"
                ax.plot(steps, values, style, marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.tight_layout()
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=80))
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# Command lines


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with the description as written and each flag's default, where it has one of its own (a
    default that depends on the task or the preset is spelled out in the flag's help)."""

    def _get_help_string(self, action):
        shown = action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
        return action.help + (" (default: %(default)s)" if shown and "%(default)" not in action.help else "")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (not the whole usage) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(kind, low=None, high=None, low_open=False, high_open=True):
    """An argparse type: an int or float in [low, high) (low_open: (low, ...; high_open=False: ..., high])."""
    what = "an integer" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or not math.isfinite(value):
            bounds = ([f"{'>' if low_open else '>='} {low}"] if low is not None else []) + \
                     ([f"{'<' if high_open else '<='} {high}"] if high is not None else [])
            raise argparse.ArgumentTypeError(f"{text} is not {what} {' and '.join(bounds) or 'that is finite'}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT, NATURAL, POSITIVE, NONNEGATIVE = number(int, 1), number(int, 0), number(float, 0, low_open=True), number(float, 0)


# ----------------------------------------------------------------------------------------------------
# Devices and torchrun


def pick_device(name, local_rank=0):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but no CUDA GPU is visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(device_name):
    """One code path for 1 or N processes: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, a plain run does not.
    nccl for CUDA, gloo for CPU (so the distributed path is tested without a GPU)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    return rank, world, device


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    """torch.autocast for bf16/fp16, a no-op context for fp32."""
    return torch.autocast(device.type, dtype=DTYPES[precision], enabled=precision != "fp32")


BF16_FEATURES = ("amx_bf16", "avx512_bf16", "bf16")  # /proc/cpuinfo: Intel AMX, AVX512-BF16; Arm's BF16


def native_bf16_feature(cpuinfo="/proc/cpuinfo"):
    """The feature with which this CPU executes bf16 natively, from the kernel's list of its flags, or None
    (where the list is not there, say off Linux, too: bf16 is then assumed emulated)."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    flags = {flag for line in lines if line.split(":")[0].strip() in ("flags", "Features")
             for flag in line.split(":", 1)[1].split()}
    return next((feature for feature in BF16_FEATURES if feature in flags), None)


def resolve_precision(precision, device):
    """The autocast precision to run and why: 'auto' is bf16 on CUDA, bf16 on a CPU that executes it
    natively (1.1-1.7x the speed of fp32 there), and fp32 on one that does not, where bf16 is emulated and
    several times slower."""
    if precision == "fp16" and device.type != "cuda":
        raise SystemExit("error: --precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        return "bf16", "auto: bf16 on CUDA"
    feature = native_bf16_feature()
    if feature:
        return "bf16", f"auto: this CPU executes bf16 natively ({feature})"
    return "fp32", "auto: this CPU has no native bf16, which it would emulate several times slower than fp32"
