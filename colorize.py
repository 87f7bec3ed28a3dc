"""Colorization of comic panels: Pix2Pix (Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks", arXiv 1611.07004) in CIE Lab, as the colorization mode of the authors' PyTorch code.
Everything that makes this task what it is lives here: TASK keeps the contract of taskbase.Task, which
is all that train.py, generate.py and the benchmarks ask of it.

G sees the gray panel's lightness x = L/50 - 1 (B, 1, S, S) and predicts its colour y = ab/110 (B, 2, S, S),
both in [-1, 1]; the 70x70 PatchGAN judges (gray, colour) pairs. At full resolution (generate.py) the
predicted ab is upsampled to the page and joined to the page's own L, so the line art stays sharp (as
richzhang/colorization and DeOldify do). By default the upsampling is edge-aware, a joint bilateral filter
and joint bilateral upsampling guided by L, so that each colour stays inside its ink lines (docs/colour.md).
With --hints, G also sees colour hints, (B, 3, S, S) beside L, spread over each hint's region unless
--hints points (hints.py, docs/hints.md); D never does.

Sections: the Lab conversions (torch, batched, for training; numpy tables, a band of rows at a time, for
generate.py), the colour metrics (CIEDE2000, colourfulness), the training transform, the task itself.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import hints
import images
import utils
from taskbase import XY, Task

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
    """CIE's f, exact on a tensor: the cube root, a line below DELTA^3 (L = 116 f(Y) - 16)."""
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


def cie_f_table(Y):
    """cie_f of luminance Y in [0, 1] (float32 numpy), looked up in its table of LINEAR_STEPS steps."""
    steps = Y * LINEAR_STEPS
    steps += 0.5
    return _F_OF_STEP[steps.astype(np.uint16)]


def _cie_f_inverse(f):
    """cie_f inverted, on float32 numpy arrays."""
    t = f * f * f
    dark = f <= _DELTA
    t[dark] = 3 * _DELTA**2 * (f[dark] - 4 / 29)
    return t


def lab_to_srgb8(Y, fy, a, b):
    """Luminance Y, f(Y) and the a and b of each pixel (rows, W each, float32) -> uint8 sRGB (rows, W, 3),
    out-of-gamut colours clipped. Y goes in as it is, not back from f(Y): exact, and one cube less."""
    xyz = np.stack([_cie_f_inverse(fy + a / 500), Y, _cie_f_inverse(fy - b / 200)])
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
# Colour metrics: PSNR rewards gray, desaturated output, so the colour difference and the colourfulness
# say what PSNR hides.


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


def quantize(img):
    """Values in [0, 1] as an 8-bit image holds them: baselines are scored as the saved outputs are."""
    return (img * 255 + 0.5).floor() / 255


# ----------------------------------------------------------------------------------------------------
# The training transform (in the data loader's workers: PIL, uint8; Lab runs later, on whole batches)


class ColorizeTransform:
    """Pix2Pix jitter: shorter side to load_size, random crop and horizontal flip (train); shorter side
    to image_size and center crop (validation). Panels smaller than the crop are scaled up."""

    def __init__(self, image_size, load_size, train):
        self.image_size, self.load_size, self.train = image_size, load_size, train
        self.min_side = load_size if train else image_size  # what JPEG draft decoding must keep

    def __call__(self, img, rng):
        s = self.image_size
        img = images.resize_shorter(img, self.min_side)
        w, h = img.size
        if self.train:
            left, top = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        else:
            left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
        if self.train and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return (images.pil_to_tensor(img),)  # (3, S, S) uint8


# ----------------------------------------------------------------------------------------------------
# Full resolution (generate.py): the network sees the image's L squashed to a --size square (--aspect
# squash, the default), or at the image's own aspect, reflect-padded to the U-Net's multiple (keep); the
# predicted ab, cropped back, is upsampled to the page and joined to the page's own L. Training crops
# squares and never squashes, yet keep scores lower: a tall input gives the U-Net's 1x1 bottleneck a
# shape it never saw in training, and its colours go astray (docs/aspect.md).

MAX_ASPECT = 8  # the network's time grows with the padded area: a longer side past 8 x --size shrinks the image


def network_shape(width, height, size):
    """The (w, h) an image is resized to for the network: the shorter side `size`, the longer side at
    most MAX_ASPECT * size (a 64x2000 strip at 256 becomes 66x2048; its ab is upsampled anyway)."""
    scale = min(size / min(width, height), MAX_ASPECT * size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# Edge-aware upsampling of ab (generate.py --ab-upsample joint-bilateral, the default). Two steps, each of
# which weighs a network pixel also by how close its L is to that of the pixel being made (a Gaussian of
# the difference, JB_SIGMA_L), so that no colour crosses an ink line, whose L differs from the colours on
# either side of it:
#   1. at the network's resolution, a joint bilateral filter (Petschnigg et al. 2004, "Digital Photography
#      with Flash and No-Flash Image Pairs", SIGGRAPH; Eisemann and Durand 2004) of G's ab, guided by the
#      L that G saw: it evens out G's pixel-to-pixel colour noise within each region, not across regions;
#   2. joint bilateral upsampling (Kopf, Cohen, Lischinski and Uyttendaele 2007, "Joint Bilateral
#      Upsampling", ACM TOG 26(3), which applies it to colorization among other tasks) to the page,
#      guided by the page's own L: each page pixel mixes the 2x2 network pixels that bilinear would mix,
#      with bilinear's weights times their L's likeness to its own.
# The widths are in network pixels and L units, so one default serves any upsampling factor (a 64-px demo
# model on 512-px panels, the paper's 256-px model on a 100-megapixel scan). Chosen on held-out demo
# panels (benchmarks/upsample_study.py, docs/colour.md), against the fast guided filter (He and Sun 2015),
# whose linear model in L leaves a halo of the opposite colour outside an ink line, separable upsampling
# (streaks along curved lines), and 4x4 taps in step 2 (0.07 dB better, 2.5 times the time).
JB_SIGMA_L = 5.0  # L units: ink (L ~ 10) against a colour (L 40-95) weighs e^-18 or less
JBF_SIGMA_SPACE = 2.0  # network pixels: the filter's Gaussian, taps out to 2 sigma
JBF_RADIUS = math.ceil(2 * JBF_SIGMA_SPACE)
# Step 2 runs on JBU_CHUNK_PIXELS page pixels at a time: its float32 temporaries (128 KB each) stay in the
# CPU's cache, which makes it 1.6 times as fast as on whole bands.
JBU_CHUNK_PIXELS = 2**15
# The exponent of the L weight stops at -80 (e^-80 is still a normal float32): where no tap's L is within
# ~60 units of the pixel's, the spatial weights alone decide, and no weight sum is ever 0.
JB_EXPONENT_FLOOR = -80.0


def likeness(L, L_tap):
    """The L weight of a tap: exp(-(L - L_tap)^2 / (2 JB_SIGMA_L^2)), float32, in a new array."""
    d = L - L_tap
    d *= d
    d *= -1 / (2 * JB_SIGMA_L**2)
    torch.from_numpy(d).clamp_min_(JB_EXPONENT_FLOOR).exp_()  # in place; numpy's maximum and float32 exp took 5
    return d  # and 8 times as long on the 2-core EPYC


def joint_bilateral_filter(L, ab):
    """Step 1: ab (2, h, w) smoothed within the regions of L (h, w), at the network's resolution, over
    the offsets within JBF_RADIUS."""
    h, w, r = *L.shape, JBF_RADIUS
    L_pad, ab_pad = np.pad(L, r, mode="edge"), np.pad(ab, ((0, 0), (r, r), (r, r)), mode="edge")
    total, weights = np.zeros_like(ab), np.zeros_like(L)
    for dy, dx in ((dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r):
        weight = likeness(L, L_pad[r + dy:r + dy + h, r + dx:r + dx + w])
        weight *= np.float32(math.exp(-(dy * dy + dx * dx) / (2 * JBF_SIGMA_SPACE**2)))
        weights += weight
        total += weight * ab_pad[:, r + dy:r + dy + h, r + dx:r + dx + w]
    return total / weights


def joint_bilateral_upsample(L, rows, columns):
    """Step 2 for a few page rows of L (rows, W). rows: for each of the two network rows that bilinear
    mixes into a page row, their indices (rows,) and bilinear weights (rows, 1); columns: for each of the
    two network columns that it mixes into a page column, the network's L and filtered ab with that
    column repeated at every page column it feeds (3, h, W), and the weights (W,) -> ab (2, rows, W)."""
    total, weights = np.zeros((2, *L.shape), np.float32), np.zeros(L.shape, np.float32)
    for tap_rows, row_weight in rows:
        for Lab_wide, column_weight in columns:
            tap = Lab_wide[:, tap_rows]  # (3, rows, W): this tap's L, a and b
            weight = likeness(L, tap[0])
            weight *= row_weight
            weight *= column_weight
            weights += weight
            ab_tap = tap[1:]
            ab_tap *= weight
            total += ab_tap
    return total / weights


def linear_taps(n_out, n_in):
    """Linear resampling of rows as F.interpolate(align_corners=False) does it, but for any band of
    output rows: for each output row its two input rows and the second one's weight."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
    first = np.minimum(src.astype(np.int64), n_in - 1)
    return first, np.minimum(first + 1, n_in - 1), (src - first).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# The task

LARGE_SET_IMAGES = 200_000  # training images from which a run takes the large-set preset


class Colorize(Task):
    """Gray panel -> colour panel: x = L/50 - 1 (B, 1, S, S), y = ab/110 (B, 2, S, S)."""

    name, title, dataset, demo_name = "colorize", "colorize (Pix2Pix)", "comics", "panel"
    # Isola et al. 2017, section 4 and appendix 6.2: batch 1, 100 epochs at 2e-4 then 100 of linear
    # decay, lambda_L1 100, random jitter (resize to 286, crop 256, flip).
    # At test time the official code keeps G in training mode (test.py without --eval): dropout on, and
    # BatchNorm over the batch of 1, each image's own statistics. No average of G's weights.
    paper = dict(netG="unet", netD="patch", image_size=256, load_size=286, batch_size=1, epochs=100,
                 epochs_decay=100, ngf=64, ndf=64, bottleneck=4000, rec_loss="l1", lambda_rec=100.0,
                 val_images=500, ema=0.0, test_dropout="on", norm_stats="image", precision="fp32")
    # Where the defaults differ (docs/defaults.md): BatchNorm at test time as G trained, each image's own
    # statistics at batch 1 and the running averages above it (defaults); bf16 where the machine runs it
    # natively (utils.resolve_precision). The demo keeps the average of G's weights and deterministic
    # outputs that were chosen on its drawings (docs/ema.md).
    departures = dict(norm_stats="auto", precision="auto")
    demo_departures = dict(ema=0.999, test_dropout="off")
    # The same paper gives big sets few epochs at batch 4: ImageNet colorization (1.2M images) about 6
    # epochs, edges2shoes (50k) and edges2handbags (137k) 15. COMICS (1.2M panels) follows ImageNet.
    large_set = dict(batch_size=4, epochs=3, epochs_decay=3)
    # The procedural demo, sized to finish in minutes on a 2-core CPU (see README).
    demo_preset = dict({**paper, **departures, **demo_departures}, image_size=64, load_size=72, batch_size=4,
                       epochs=8, epochs_decay=4, ngf=32, ndf=32, val_images=64, demo_images=1000)
    score, baseline = "psnr", "baseline_gray_psnr"  # best.pt has the best score; the log shows both

    # --- flags and presets

    def train_flags(self):
        return {"--split-seed": dict(type=int, default=0, help="seed of the by-book COMICS split (the same as classes.py "
                                          "--split-seed, so both make the same split)"),
                "--hints": dict(nargs="?", const="spread", choices=hints.MODES, help="G also takes colour hints, "
                                "sampled from the target in training, and validation scores it with none and with 10; "
                                "spread over each hint's region (default), or as points as Zhang et al. 2017 "
                                "(docs/hints.md)")}

    def generate_flags(self):
        return {
            "--hints": dict(metavar="DIR", help="hint images for a checkpoint trained with --hints: DIR/REL/name.png "
                            "for the input REL/name.ext, whose opaque pixels give their colour (docs/hints.md) "
                            "(default: none)"),
            "--aspect": dict(choices=["squash", "keep"], default="squash", help="the network sees the image squashed "
                             "to a --size square, or at its own aspect with the shorter side --size, padded (scores "
                             "lower on tall panels: docs/aspect.md)"),
            "--ab-upsample": dict(choices=["joint-bilateral", "bilinear"], default="joint-bilateral", help="the "
                                  "predicted colour to the page's size, edge-aware by the page's L (docs/colour.md) "
                                  "or bilinear"),
        }

    def generate_settings(self, args):
        """--hints aside: each output records the bytes of its own hint file instead (side_files)."""
        return {k: v for k, v in super().generate_settings(args).items() if k != "hints"}

    def preset(self, train_images, paper=False):
        """The paper's large-set practice from LARGE_SET_IMAGES training images on."""
        preset = super().preset(train_images, paper)
        if train_images is not None and train_images >= LARGE_SET_IMAGES:
            preset = {**preset, **self.large_set}
        return preset

    def presets(self):
        return {**super().presets(), f"{LARGE_SET_IMAGES // 1000}k+ images": self.preset(LARGE_SET_IMAGES)}

    def defaults(self, cfg):
        """The plain GAN + lambda L1 objective, and BatchNorm at test time as in training (at batch 1 it
        saw one image at a time: the paper's test-time protocol)."""
        return dict(lambda_adv=1.0, lr_g_mult=1.0, norm_stats="image" if cfg.batch_size == 1 else "running")

    def problems(self, cfg):
        return [f"colorize uses --{k} {v}" for k, v in (("netG", "unet"), ("netD", "patch")) if getattr(cfg, k) != v]

    # --- the networks

    def generator_options(self, cfg):
        return {"hinted": hints.used(cfg)}

    def channels(self, netG, hinted=False):
        """L (and, hinted, the hint map) in, ab out."""
        return 1 + (hints.CHANNELS if hinted else 0), 2

    def d_input(self, x, image, cfg):
        return torch.cat([x[:, :1], image], dim=1)  # the PatchGAN judges (gray, colour) pairs, never the hints

    # --- the data

    def transforms(self, cfg):
        jitter = [ColorizeTransform(cfg.image_size, cfg.load_size, train) for train in (True, False)]
        return hints.with_patches(*jitter) if hints.used(cfg) else tuple(jitter)

    def draw(self, seed, size):
        """A comic panel."""
        import demo  # here, not at the top: generate.py imports this file, and never needs the demo
        return demo.draw_panel(seed, size)

    def demo_side(self, cfg):
        return cfg.load_size  # what the jitter crops from

    def demo_input(self, drawing):
        """The panel in gray."""
        return drawing.convert("L")

    def batch_to_xy(self, batch, cfg, device):
        """uint8 RGB images -> x = L/50 - 1 (and with --hints the patches' hint map over y), y = ab/110."""
        x, y = colorize_pair(batch[0].to(device, non_blocking=True))
        if hints.used(cfg):
            x = torch.cat([x, hints.for_network(cfg, (x[:, 0] + 1) * L_SCALE, hints.patch_means(y, batch[1]))], dim=1)
        return XY(x, y, weight=None, hole=None)

    # --- what is shown and scored

    def pictures(self, xy, fake, cfg):
        """The gray panel (with the hints in their colour, if any: the map's weight is 1 there alone), the
        colorized one, the real one."""
        L, hint_ab = xy.x[:, :1], xy.x[:, 1:3] * (xy.x[:, 3:] == 1) if xy.x.shape[1] > 1 else torch.zeros_like(xy.y)
        return colorize_rgb(L, hint_ab), colorize_rgb(L, fake), colorize_rgb(L, xy.y)

    def test_inputs(self, xy, cfg):
        return hints.test_inputs(xy) if hints.used(cfg) else {"": xy}

    def sample_columns(self, cfg):
        hinted = hints.used(cfg)
        return f"input | output | input with {hints.VAL_HINTS} hints | output | target" if hinted else super().sample_columns(cfg)

    def scores(self, inp, out, target, hole=None):
        """Scores of the output and of the gray panel itself: PSNR rewards gray, desaturated output, so the
        colour difference (CIEDE2000) and the colourfulness say what PSNR hides. The whole image is G's."""
        scores = {}
        for prefix, image in {"": out, "baseline_gray_": inp}.items():
            scores.update({f"{prefix}psnr": utils.psnr(image, target), f"{prefix}ssim": utils.ssim(image, target),
                           f"{prefix}ciede2000": mean_ciede2000(image, target)})
        scores.update(colourfulness=colourfulness(out), reference_colourfulness=colourfulness(target))
        return scores

    def score_image(self, out, reference, hole):
        """The gray baseline is the reference's own L with ab = 0 (what G saw), as an 8-bit image."""
        lab = rgb_to_lab(reference)
        gray = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1))
        return self.scores(quantize(gray), out, reference)

    # --- generate.py: any image at full resolution

    def setup_generation(self, run):
        hints.check_generation(run.hints, hints.used(run.cfg), run.checkpoint)

    def side_files(self, src, run):
        return {"hints": hints.hint_file(src, run.input, run.hints)} if run.hints else {}

    def network_input_shape(self, run):
        return f"shorter side {run.size}" if run.aspect == "keep" else f"{run.size}x{run.size}"

    def image_to_input(self, src, run):
        """x = L/50 - 1 (1, H, W) (and for a G that takes hints its hint image's map, none in the padding:
        hints.page_hints), and where the resized image lies in its padding."""
        page = images.read_page(src, run.max_pixels, min_side=run.size)
        w, h = network_shape(*page.size, run.size) if run.aspect == "keep" else (run.size, run.size)
        small = np.asarray(page.resize((w, h), Image.BICUBIC, reducing_gap=3.0))
        L = 116 * cie_f_table(luminance(small)) - 16
        multiple = 2 ** len(run.G.downs)  # each down block halves the image, down to 1 pixel
        pad_h, pad_w = -h % multiple, -w % multiple
        top, left = pad_h // 2, pad_w // 2
        padding = ((top, pad_h - top), (left, pad_w - left))
        item = dict(x=torch.from_numpy(np.pad(L / L_SCALE - 1, padding, mode="reflect"))[None], crop=(top, left, h, w))
        if hints.used(run.cfg):
            path = self.side_files(src, run).get("hints")
            hint_map, how = hints.page_hints(path, page.size, L, colorize_pair, run)
            item.update(x=torch.cat([item["x"], torch.from_numpy(np.pad(hint_map, ((0, 0), *padding)))]),
                        **({"how": how} if how else {"hints": path}))
        return item

    def finish_image(self, item, fake, page, run):
        """-> (input band, colorized band) for each band of the page: G's ab (2, H, W), cropped out of the
        padding and upsampled to the page as run.ab_upsample says ("joint-bilateral", guided by L, or
        "bilinear"; a run of None, outside generate.py, is bilinear), joined to each band's own L; the input
        bands with the item's hints drawn over them, if it has some."""
        top, left, h, w = item["crop"]
        ab = fake[:, top:top + h, left:left + w].numpy() * AB_SCALE  # (2, h, w) in Lab units
        edge_aware = run is not None and run.ab_upsample == "joint-bilateral"
        pieces = (self.finish_joint_bilateral if edge_aware else self.finish_bilinear)(item, ab, page)
        return hints.shown_over_bands(pieces, item["hints"], page.size, run.max_pixels) if item.get("hints") else pieces

    def finish_bilinear(self, item, ab, page):
        """finish_image with ab upsampled bilinearly, as F.interpolate(align_corners=False) would."""
        h = item["crop"][2]
        first, second, weight = linear_taps(page.height, h)
        for r0, band in images.bands(page):
            rows = slice(r0, r0 + len(band))
            ab_rows = ab[:, first[rows]] * (1 - weight[rows, None]) + ab[:, second[rows]] * weight[rows, None]
            a, b = F.interpolate(torch.from_numpy(ab_rows), size=page.width, mode="linear", align_corners=False).numpy()
            Y = luminance(band)
            yield band, lab_to_srgb8(Y, cie_f_table(Y), a, b)

    def finish_joint_bilateral(self, item, ab, page):
        """finish_image, edge-aware: G's ab filtered within the regions of the L that G saw, then upsampled
        to the page by the page's own L. Each output pixel depends on its page row alone, so bands give
        the whole page's result bit for bit."""
        top, left, h, w = item["crop"]
        L_small = ((item["x"][0, top:top + h, left:left + w] + 1) * L_SCALE).numpy()  # the L that G saw
        Lab_small = np.concatenate([L_small[None], joint_bilateral_filter(L_small, ab)])  # (3, h, w)
        first, second, weight = linear_taps(page.height, h)
        col_first, col_second, col_weight = linear_taps(page.width, w)
        # The column taps do not decrease along a row: gathering them is a repeat of each network column,
        # done once per image ((3, network rows, page columns) each), so that each band only picks its rows.
        columns = [(np.repeat(Lab_small, np.bincount(col_first, minlength=w), axis=2), 1 - col_weight),
                   (np.repeat(Lab_small, np.bincount(col_second, minlength=w), axis=2), col_weight)]
        step = max(1, JBU_CHUNK_PIXELS // page.width)
        for r0, band in images.bands(page):
            Y = luminance(band)
            fy = cie_f_table(Y)
            L = 116 * fy - 16  # (rows, W)
            ab_band = np.empty((2, *L.shape), np.float32)
            for r in range(0, len(band), step):
                rows = slice(r0 + r, r0 + min(r + step, len(band)))
                taps = (first[rows], 1 - weight[rows, None]), (second[rows], weight[rows, None])
                ab_band[:, r:r + step] = joint_bilateral_upsample(L[r:r + step], taps, columns)
            yield band, lab_to_srgb8(Y, fy, *ab_band)


TASK = Colorize()
