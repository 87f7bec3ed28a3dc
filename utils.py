"""What train.py, generate.py and classes.py share: image I/O, Lab colour conversion, holes and masks,
metrics, checkpoint I/O, plots and the torchrun set-up.

Nothing here knows about a particular dataset layout (classes.py) or network (model.py).
"""
import csv
import math
import os
import struct
import sys
import warnings
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
    """An exception as one line for a report: 'OSError: image file is truncated'."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def is_image_file(path):
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS and not Path(path).name.startswith(".")


def _folder_id(path):
    st = os.stat(path)  # through links: the folder a link leads to
    return st.st_dev, st.st_ino


def _skip_folder(path, why):
    print(f"warning: skipped folder {path}: {why}", file=sys.stderr)
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


def list_images(root, avoid=()):
    """Every image file below root (or root itself if it is a file), sorted, at any depth, under the
    names it has in the tree. Links are followed, but each real folder is entered once: a link back up
    the tree (a loop) or to a folder walked already is reported in one line and skipped, and so are the
    folders in `avoid` (generate.py's output) and folders that cannot be listed."""
    root = Path(root)
    if root.is_file():
        return [root] if is_image_file(root) else []
    seen, avoided = {_folder_id(root)}, {_folder_id(p) for p in avoid if Path(p).is_dir()}
    files = []
    walk = os.walk(root, followlinks=True, onerror=lambda e: _skip_folder(e.filename, one_line(e)))
    for dirpath, dirnames, filenames in walk:
        names, entered = sorted(d for d in dirnames if not d.startswith(".")), set()
        for name in sorted(names, key=lambda d: os.path.islink(os.path.join(dirpath, d))):  # the tree's own first
            if _enter(Path(dirpath) / name, seen, avoided):
                entered.add(name)
        dirnames[:] = [d for d in names if d in entered]
        files += [Path(dirpath) / f for f in sorted(filenames) if is_image_file(f)]
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


def pil_to_tensor(img):
    """PIL RGB -> uint8 tensor (3, H, W): the workers hand over bytes, the device does the float maths."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


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
    an error and is deleted when it does not, so a crash never leaves half an image."""

    def __init__(self, path, width, height):
        self.path, self.width, self.height = Path(path), width, height
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.tmp, "wb")
        self.deflate = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        self.above = np.zeros((self.width, 3), np.uint8)  # the Up filter sees zeros above the first row
        self.rows = 0
        self.file.write(PNG_SIGNATURE)
        self._chunk(b"IHDR", PNG_HEADER.pack(self.width, self.height, *PNG_RGB8))
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


# ----------------------------------------------------------------------------------------------------
# Lab colour (sRGB, D65), batched in torch so that whole batches convert on the training device

_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883])
_DELTA = 6 / 29  # CIE: the cube root switches to a line below DELTA^3
L_SCALE, AB_SCALE = 50.0, 110.0  # Pix2Pix colorization: x = L / 50 - 1 and y = ab / 110, both in [-1, 1]


def _mix(matrix, img):  # (3, 3) x (B, 3, H, W) over the channel axis
    return torch.einsum("ij,bjhw->bihw", matrix.to(img), img)


def srgb_to_linear(v):
    return torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v):
    return torch.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def cie_f(t):
    """CIE's f: the cube root, a line below DELTA^3 (L = 116 f(Y) - 16)."""
    return torch.where(t > _DELTA**3, t.clamp_min(1e-12) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29)


def rgb_to_lab(rgb):
    """(B, 3, H, W) sRGB in [0, 1] -> Lab (L in [0, 100], a and b roughly in [-110, 110])."""
    rgb = rgb.float()
    xyz = _mix(_RGB_TO_XYZ, srgb_to_linear(rgb)) / _WHITE_D65.to(rgb).view(1, 3, 1, 1)
    fx, fy, fz = cie_f(xyz).unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_rgb(lab):
    """(B, 3, H, W) Lab -> sRGB in [0, 1], out-of-gamut colours clipped."""
    L, a, b = lab.float().unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=1)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE_D65.to(f).view(1, 3, 1, 1)
    linear = _mix(torch.linalg.inv(_RGB_TO_XYZ).to(f), xyz).clamp(0, 1)
    return linear_to_srgb(linear).clamp(0, 1)


def colorize_pair(rgb_uint8):
    """uint8 RGB batch (B, 3, H, W) -> x = normalized L (B, 1, H, W) and y = normalized ab (B, 2, H, W)."""
    lab = rgb_to_lab(rgb_uint8.float() / 255)
    return lab[:, :1] / L_SCALE - 1, lab[:, 1:] / AB_SCALE


def colorize_rgb(x, ab):
    """Normalized L (B, 1, H, W) and normalized ab (B, 2, H, W) -> RGB in [0, 1]; ab = 0 gives the gray."""
    return lab_to_rgb(torch.cat([(x + 1) * L_SCALE, ab * AB_SCALE], dim=1))


# The same conversions for uint8 pages on the CPU, a band of rows at a time (generate.py, at full
# resolution): float32 numpy, the sRGB curve both ways through lookup tables, and of the input only
# its luminance Y, which is all that its L needs.

# The tables come from the torch functions above, in float64: one formula for each curve.
_LEVELS = torch.arange(256, dtype=torch.float64) / 255
_Y_OF_LEVEL = (srgb_to_linear(_LEVELS)[:, None] * _RGB_TO_XYZ[1].double()).float().numpy()  # (256, 3): each channel's share of Y
_Y_OF_GRAY = _Y_OF_LEVEL.sum(1)  # R = G = B
# Linear light in 65536 steps: one step moves an 8-bit sRGB value by 0.05 at most, and f(Y) by 6e-5 at
# most (f' <= 1 / (3 DELTA^2)), a hundredth of an L unit.
LINEAR_STEPS = 65535
_STEPS = torch.arange(LINEAR_STEPS + 1, dtype=torch.float64) / LINEAR_STEPS
_SRGB_OF_STEP = torch.floor(linear_to_srgb(_STEPS) * 255 + 0.5).to(torch.uint8).numpy()
_F_OF_STEP = cie_f(_STEPS).float().numpy()
_XYZ_TO_LINEAR = (np.linalg.inv(_RGB_TO_XYZ.double().numpy()) * _WHITE_D65.double().numpy()).astype(np.float32)


def luminance(pixels):
    """uint8 sRGB pixels (rows, W, 3), or gray levels (rows, W) -> relative luminance Y (rows, W), float32."""
    if pixels.ndim == 2:
        return _Y_OF_GRAY[pixels]
    Y = _Y_OF_LEVEL[pixels[..., 0], 0]
    Y += _Y_OF_LEVEL[pixels[..., 1], 1]
    Y += _Y_OF_LEVEL[pixels[..., 2], 2]
    return Y


def lab_f(Y):
    """CIE's f (the cube root, a line below DELTA^3) of luminance Y in [0, 1], float32: L = 116 f(Y) - 16."""
    steps = Y * LINEAR_STEPS
    steps += 0.5
    return _F_OF_STEP[steps.astype(np.uint16)]


def _lab_f_inverse(f):
    t = f * f * f
    dark = f <= _DELTA
    t[dark] = 3 * _DELTA**2 * (f[dark] - 4 / 29)
    return t


def lab_to_srgb8(Y, fy, a, b):
    """Luminance Y, f(Y) and the a and b of each pixel (rows, W each, float32) -> uint8 sRGB (rows, W, 3),
    out-of-gamut colours clipped. Y goes in as it is, not back from f(Y): exact, and one cube less."""
    xyz = np.stack([_lab_f_inverse(fy + a / 500), Y, _lab_f_inverse(fy - b / 200)])
    # einsum rather than matmul: numpy's BLAS would start its own threads for a 3x3 product
    linear = np.einsum("ij,j...->i...", _XYZ_TO_LINEAR, xyz)
    np.clip(linear, 0, 1, out=linear)
    linear *= LINEAR_STEPS
    linear += 0.5
    steps = linear.astype(np.uint16)
    rgb = np.empty((*Y.shape, 3), np.uint8)
    for c in range(3):  # straight into interleaved RGB: PNG rows are read 30% faster than from planes
        np.take(_SRGB_OF_STEP, steps[c], out=rgb[..., c])
    return rgb


# ----------------------------------------------------------------------------------------------------
# Holes (inpainting). The network predicts a square `patch` (half the image side); with an overlap o the
# hole actually blanked is o pixels smaller on each side, and the visible band is predicted too (Pathak
# et al.'s overlapPred), with a larger loss weight so the pasted patch blends in.

FILL_VALUES = {"white": (1.0, 1.0, 1.0), "zero": (0.0, 0.0, 0.0),
               "mean": tuple(c / 127.5 - 1 for c in (117, 104, 123))}  # the original's mean pixel
OVERLAP_WEIGHT = 10.0  # loss weight of the overlap band relative to the hole (overlapL2Weight)


def center_box(size, patch):
    return (size - patch) // 2, (size - patch) // 2


def box_mask(boxes, size, patch, shrink=0):
    """(B, 2) top-left corners -> (B, 1, S, S) float mask, 1 inside each patch shrunk by `shrink` px."""
    r = torch.arange(size, device=boxes.device)
    top, left = boxes[:, 0, None] + shrink, boxes[:, 1, None] + shrink
    rows = (r >= top) & (r < top + patch - 2 * shrink)  # (B, S)
    cols = (r >= left) & (r < left + patch - 2 * shrink)
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1).float()


def fill_hole(real, hole, fill):
    """Blank the hole (B, 1, S, S) of images in [-1, 1] with the fill colour."""
    colour = torch.tensor(FILL_VALUES[fill], device=real.device, dtype=real.dtype).view(1, 3, 1, 1)
    return real * (1 - hole) + colour * hole


def crop_patches(img, boxes, patch):
    """(B, C, S, S) -> (B, C, P, P): each image's patch at its own box. Keep boxes on the CPU: reading
    them from a GPU would make every training step wait for the GPU."""
    return torch.stack([im[:, t:t + patch, l:l + patch] for im, (t, l) in zip(img, boxes.tolist())])


def paste_patches(img, patches, boxes):
    out = img.clone()
    for im, p, (t, l) in zip(out, patches, boxes.tolist()):
        im[:, t:t + p.shape[-2], l:l + p.shape[-1]] = p
    return out


def inpaint_pair(rgb_uint8, boxes, patch, overlap, fill, netG):
    """uint8 RGB batch and patch boxes -> (x, y, weight, hole, real).

    x is what G sees: the image with the hole filled (plus the hole as a 4th channel for the U-Net);
    y is what G predicts: the patch (Context Encoder) or the whole image (U-Net); weight is the
    reconstruction loss weight over y: 1 in the hole, OVERLAP_WEIGHT in the band, 0 elsewhere.
    """
    real = rgb_uint8.float() / 127.5 - 1
    size = real.shape[-1]
    hole = box_mask(boxes.to(real.device), size, patch, overlap)
    area = box_mask(boxes.to(real.device), size, patch)  # hole + band
    weight = hole + OVERLAP_WEIGHT * (area - hole)
    masked = fill_hole(real, hole, fill)
    if netG == "context-encoder":
        return masked, crop_patches(real, boxes, patch), crop_patches(weight, boxes, patch), hole, real
    return torch.cat([masked, hole], dim=1), real, weight, hole, real


def inpaint_output(x, fake, boxes, hole, netG):
    """G's output -> the repaired image in [-1, 1]: only the hole is taken from the prediction."""
    masked = x[:, :3]
    full = paste_patches(masked, fake, boxes) if netG == "context-encoder" else fake
    return masked * (1 - hole) + full * hole


def weighted_mean(err, weight):
    """Mean of err over the pixels with weight > 0, weighted; weight None is the plain mean."""
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / (weight > 0).sum().clamp_min(1)


# ----------------------------------------------------------------------------------------------------
# Metrics on images in [0, 1], one value per image

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def psnr(a, b):
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


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


def l1(a, b):
    return (a - b).abs().flatten(1).mean(1)


def l2(a, b):
    """Mean squared error per image: the Context Encoder paper's 'mean L2' on images in [0, 1]."""
    return ((a - b) ** 2).flatten(1).mean(1)


def _hue_degrees(a, b):
    return torch.rad2deg(torch.atan2(b, a)) % 360  # atan2(0, 0) = 0: a gray gets hue 0, as the paper sets it


def ciede2000(lab1, lab2):
    """CIEDE2000 colour difference (Sharma, Wu and Dalal 2005, equations 1-22, kL = kC = kH = 1) of two
    (B, 3, H, W) Lab tensors -> (B, H, W), computed in float64: the hue terms lose 1e-4 in float32."""
    (L1, a1, b1), (L2, a2, b2) = lab1.double().unbind(1), lab2.double().unbind(1)
    C_ab = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    G = 0.5 * (1 - torch.sqrt(C_ab**7 / (C_ab**7 + 25.0**7)))
    a1, a2 = (1 + G) * a1, (1 + G) * a2  # a' : stretches a near the neutral axis
    C1, C2 = torch.hypot(a1, b1), torch.hypot(a2, b2)
    h1, h2 = _hue_degrees(a1, b1), _hue_degrees(a2, b2)
    gray = C1 * C2 == 0  # a hue is undefined: no hue difference, and the mean hue is the plain sum

    dh = h2 - h1  # the shorter way round the circle
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh)).masked_fill(gray, 0)
    dL, dC = L2 - L1, C2 - C1
    dH = 2 * torch.sqrt(C1 * C2) * torch.sin(torch.deg2rad(dh) / 2)

    L_mean, C_mean = (L1 + L2) / 2, (C1 + C2) / 2
    h_sum = h1 + h2
    h_mean = torch.where((h1 - h2).abs() <= 180, h_sum / 2, torch.where(h_sum < 360, h_sum + 360, h_sum - 360) / 2)
    h_mean = torch.where(gray, h_sum, h_mean)

    def cos(degrees):
        return torch.cos(torch.deg2rad(degrees))

    T = 1 - 0.17 * cos(h_mean - 30) + 0.24 * cos(2 * h_mean) + 0.32 * cos(3 * h_mean + 6) - 0.20 * cos(4 * h_mean - 63)
    d_theta = 30 * torch.exp(-(((h_mean - 275) / 25) ** 2))
    R_C = 2 * torch.sqrt(C_mean**7 / (C_mean**7 + 25.0**7))
    S_L = 1 + 0.015 * (L_mean - 50) ** 2 / torch.sqrt(20 + (L_mean - 50) ** 2)
    S_C = 1 + 0.045 * C_mean
    S_H = 1 + 0.015 * C_mean * T
    R_T = -torch.sin(torch.deg2rad(2 * d_theta)) * R_C  # the blue-region rotation term
    lightness, chroma, hue = dL / S_L, dC / S_C, dH / S_H
    return torch.sqrt(lightness**2 + chroma**2 + hue**2 + R_T * chroma * hue)


CIEDE2000_CHUNK_PIXELS = 2**20  # x ~25 float64 temporaries: about 200 MB at a time, whatever the image size


def mean_ciede2000(a, b):
    """Mean CIEDE2000 per image of RGB images in [0, 1] (B, 3, H, W) -> (B,), a chunk of rows at a time."""
    H, W = a.shape[-2:]
    rows = max(1, CIEDE2000_CHUNK_PIXELS // (a.shape[0] * W))
    total = sum(ciede2000(rgb_to_lab(a[..., i:i + rows, :]), rgb_to_lab(b[..., i:i + rows, :])).sum((1, 2))
                for i in range(0, H, rows))
    return total / (H * W)


def colourfulness(rgb):
    """Hasler and Suesstrunk (2003) colourfulness M of RGB images in [0, 1] (B, 3, H, W) -> (B,), on their
    8-bit scale: ~15 slightly, ~33 moderately, ~59 quite colourful; 0 for a gray image."""
    R, G, B = (rgb.double() * 255).flatten(2).unbind(1)
    rg, yb = R - G, (R + G) / 2 - B
    spread = torch.sqrt(rg.var(1, correction=0) + yb.var(1, correction=0))
    offset = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return spread + 0.3 * offset


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(state, path):
    """torch.save to a temporary file, then rename: a crash mid-write never leaves a broken last.pt."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint dict (weights_only: a checkpoint can never run code), or exit with one line."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"error: checkpoint {path} does not exist")
    except Exception as e:
        raise SystemExit(f"error: cannot read checkpoint {path}: {one_line(e)}")


# ----------------------------------------------------------------------------------------------------
# Logs and plots


def append_csv(path, row):
    """Append one row (a dict) to a CSV file, writing the header when the file is new."""
    new = not Path(path).exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def write_csv(path, rows):
    """Rewrite a CSV file with these rows (nothing if there are none)."""
    Path(path).unlink(missing_ok=True)
    for row in rows:
        append_csv(path, row)


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
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


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


def autocast(device, precision):
    """torch.autocast for bf16/fp16, a no-op context for fp32."""
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def resolve_precision(precision, device):
    """'auto' -> fp32 on CPU (bf16 autocast is ~1.7x slower on CPUs without native bf16), bf16 on CUDA."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise SystemExit("error: --precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    return precision
