"""Inpainting of faces whose center was blanked: the Context Encoder (Pathak et al. 2016, "Context
Encoders: Feature Learning by Inpainting", arXiv 1604.07379), or the Pix2Pix U-Net with the hole as a
4th input channel (--netG unet). Everything that makes this task what it is lives here: TASK keeps the
contract of taskbase.Task, which is all that train.py, generate.py and the benchmarks ask of it.

G sees the image with its hole filled (white by default) and predicts the hole's square patch (the
Context Encoder, half the image side) or the whole image (the U-Net); only the hole is ever taken from
the prediction. The Context Encoder's D judges the patch alone, the PatchGAN (masked image, image) pairs.

Sections: holes and masks (torch, batched), the training transform, full resolution (generate.py: the
white square found in a photo, the square window around it at the network size, the prediction pasted
inside the hole only), the task itself.
"""
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import images
import utils
from taskbase import XY, Task

# ----------------------------------------------------------------------------------------------------
# Holes. The network predicts a square `patch` (half the image side); with an overlap o the hole
# actually blanked is o pixels smaller on each side, and the visible band is predicted too (Pathak et
# al.'s overlapPred), with a larger loss weight so the pasted patch blends in.

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


# ----------------------------------------------------------------------------------------------------
# The training transform (in the data loader's workers: PIL, uint8; masking runs later, on whole batches)


class InpaintTransform:
    """CelebA preprocessing (largest centered square, bicubic resize to image_size; a horizontal flip when
    training) and the position of the patch to predict: the center, or anywhere with position='random'."""

    def __init__(self, image_size, patch, train, position="center"):
        self.image_size, self.patch, self.train, self.position = image_size, patch, train, position
        self.min_side = image_size

    def __call__(self, img, rng):
        s, p = self.image_size, self.patch
        img = images.center_square(img, s)
        if self.train and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.train and self.position == "random":
            box = (int(rng.integers(0, s - p + 1)), int(rng.integers(0, s - p + 1)))
        else:
            box = center_box(s, p)
        return images.pil_to_tensor(img), torch.tensor(box)  # (3, S, S) uint8, (2,) top-left of the patch


# ----------------------------------------------------------------------------------------------------
# Full resolution (generate.py): the square around the hole is processed at the network size, and the
# prediction is pasted back only inside the hole: every other pixel is bit-identical to the input. A
# hole is a box (top, left, h, w) of the image: all of it, or (a mask file) the pixels of the box that
# the mask marks.

WHITE_THRESHOLD = 230  # a JPEG-compressed white square stays above this in every channel
MIN_SQUARE_FRACTION = 0.1  # a white square smaller than this share of the image side is no hole
MAX_SQUARE_ASPECT = 1.25  # a painted square, give or take JPEG's blur: h / w within [1 / 1.25, 1.25]
SQUARE_FILL = 0.97  # share of white pixels inside a detected square
EDGE_GROW_THRESHOLD = 200  # JPEG ringing: rows around the square this bright belong to the hole ...
EDGE_GROW_SHARE = 0.9  # ... when this share of their pixels is
HALF_LEVEL = 128  # of 255: a mask pixel, or a hole pixel resampled to the network, at least half white is hole
BICUBIC_REACH = 2  # Pillow's bicubic filter reads 2 pixels on either side, in the smaller image's pixels


def find_white_square(darkest):
    """The white square painted around the center of an image, from the darkest channel of each pixel
    (H, W) uint8, as (top, left, h, w), or None if there is none (a white shirt or background is not a
    square hole)."""
    H, W = darkest.shape
    cy, cx = H // 2, W // 2
    if darkest[cy, cx] < WHITE_THRESHOLD:
        return None

    def white_until(line, start, step):  # where the white run from `start` ends in one direction
        i = start
        while 0 <= i + step < len(line) and line[i + step]:
            i += step
        return i

    column, row = darkest[:, cx] >= WHITE_THRESHOLD, darkest[cy] >= WHITE_THRESHOLD
    top, bottom = white_until(column, cy, -1), white_until(column, cy, 1)
    left, right = white_until(row, cx, -1), white_until(row, cx, 1)
    h, w = bottom - top + 1, right - left + 1
    touches_border = top == 0 or left == 0 or bottom == H - 1 or right == W - 1
    if touches_border or min(h, w) < MIN_SQUARE_FRACTION * min(H, W) or not 1 / MAX_SQUARE_ASPECT <= h / w <= MAX_SQUARE_ASPECT:
        return None
    if (darkest[top:bottom + 1, left:right + 1] >= WHITE_THRESHOLD).mean() < SQUARE_FILL:
        return None

    def bright(line):
        return (line >= EDGE_GROW_THRESHOLD).mean() > EDGE_GROW_SHARE

    # JPEG blurs the square's edge: take in the neighbouring rows and columns that are still near-white.
    while top > 0 and bright(darkest[top - 1, left:right + 1]):
        top -= 1
    while bottom < H - 1 and bright(darkest[bottom + 1, left:right + 1]):
        bottom += 1
    while left > 0 and bright(darkest[top:bottom + 1, left - 1]):
        left -= 1
    while right < W - 1 and bright(darkest[top:bottom + 1, right + 1]):
        right += 1
    return top, left, bottom - top + 1, right - left + 1


def darkest_channel(page):
    """(H, W) uint8: each pixel's darkest channel (a white square is white in all three), band by band."""
    return np.concatenate([band.min(axis=2) if band.ndim == 3 else band for _, band in images.bands(page)])


def center_hole(H, W, hole_fraction):
    """The training hole on a photo: the center of its largest centered square."""
    side = max(1, round(min(H, W) * hole_fraction))
    return (H - side) // 2, (W - side) // 2, side, side


def find_hole(page, mask_arg, mask_image, hole_fraction):
    """-> (the hole's box, description for the log)."""
    W, H = page.size
    if mask_image is not None:
        if mask_image.shape != (H, W):
            raise ValueError(f"the mask is {mask_image.shape[1]}x{mask_image.shape[0]}, the image {W}x{H}")
        rows, cols = np.flatnonzero(mask_image.any(axis=1)), np.flatnonzero(mask_image.any(axis=0))
        if not len(rows):
            raise ValueError("the mask has no hole")
        box = int(rows[0]), int(cols[0]), int(rows[-1] + 1 - rows[0]), int(cols[-1] + 1 - cols[0])
        return box, f"mask file, {int(mask_image.sum())} px"
    box = find_white_square(darkest_channel(page)) if mask_arg == "auto" else None
    how = "white square"
    if box is None:
        box, how = center_hole(H, W, hole_fraction), "no white square: blanked the center" if mask_arg == "auto" else "center"
    top, left, h, w = box
    return box, f"{how} {w}x{h} at ({left}, {top})"


def hole_inside(box, mask_image):
    """Which pixels of the box are the hole: all of them (None), or those of the mask file."""
    top, left, h, w = box
    return None if mask_image is None else mask_image[top:top + h, left:left + w]


def hole_window(box, inside, x0, y0, x1, y1):
    """The hole as a (y1 - y0, x1 - x0) bool array over a window of the image (which may reach past it)."""
    top, left, h, w = box
    window = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    t, l, b, r = max(top, y0), max(left, x0), min(top + h, y1), min(left + w, x1)
    if t < b and l < r:
        window[t - y0:b - y0, l - x0:r - x0] = True if inside is None else inside[t - top:b - top, l - left:r - left]
    return window


def context_box(box, image_size, net_hole):
    """The square region (x0, y0, x1, y1), in image pixels, that maps onto the network's input so that
    the hole's box lands on the network's hole (net_hole px at the center)."""
    top, left, h, w = box
    cy, cx = top + h / 2, left + w / 2
    side = max(h, w) * image_size / net_hole
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def context_pixels(page, box, inside, context, size):
    """The context square resized to size x size: uint8 RGB (3, s, s) and the hole (s, s) bool. Past the
    page's border its edge pixels repeat."""
    x0, y0, x1, y1 = context
    W, H = page.size
    pad = max(0, math.ceil(max(-x0, -y0, x1 - W, y1 - H)))
    image, (ox, oy) = edge_window(page, context, pad, size) if pad else (page, (0, 0))
    small = image.resize((size, size), Image.BICUBIC, box=(x0 - ox, y0 - oy, x1 - ox, y1 - oy), reducing_gap=3.0)
    # The box filter reads nothing outside the box: the hole is drawn over the box alone.
    hx0, hy0 = math.floor(x0), math.floor(y0)
    hole = np.multiply(hole_window(box, inside, hx0, hy0, math.ceil(x1), math.ceil(y1)), 255, dtype=np.uint8)
    small_hole = Image.fromarray(hole).resize((size, size), Image.BOX, box=(x0 - hx0, y0 - hy0, x1 - hx0, y1 - hy0))
    return images.pil_to_tensor(images.to_rgb(small)), torch.from_numpy(np.asarray(small_hole) >= HALF_LEVEL)


def edge_window(page, context, pad, size):
    """What resizing the context square reads of the page edge-padded by `pad`, as RGB -> (window, its
    top-left corner in the page): the same pixels as the whole page padded, without that copy."""
    x0, y0, x1, y1 = context
    W, H = page.size
    reach = BICUBIC_REACH * max(1, (x1 - x0) / size)
    wx0, wy0 = max(-pad, math.floor(x0 - reach)), max(-pad, math.floor(y0 - reach))
    wx1, wy1 = min(W + pad, math.ceil(x1 + reach)), min(H + pad, math.ceil(y1 + reach))
    inner = images.as_rgb(np.asarray(page.crop((max(wx0, 0), max(wy0, 0), min(wx1, W), min(wy1, H)))))
    window = np.pad(inner, ((max(0, -wy0), max(0, wy1 - H)), (max(0, -wx0), max(0, wx1 - W)), (0, 0)), mode="edge")
    return Image.fromarray(window), (wx0, wy0)


# ----------------------------------------------------------------------------------------------------
# The task

MASK_MODES = ("auto", "center")  # generate.py --mask, if not a mask file
DEMO_HOLE_FRACTION = 1 / 2  # demo.py's white square: the center half of the side, as the Context Encoder's patch


@dataclasses.dataclass
class Masked(XY):
    """XY of faces: also each patch's top-left corner (B, 2), on the CPU, and the real image (B, 3, S, S),
    which putting the prediction back and showing it need."""
    boxes: torch.Tensor
    real: torch.Tensor


G_LR_RATIO = 10.0  # train.lua: G's lr is 10x D's whenever 0 < lambda_rec < 1


class Inpaint(Task):
    """Face with a blanked center -> the center: x = masked image (+ the hole as a 4th channel for the
    U-Net), y = the patch (Context Encoder) or the whole image (U-Net)."""

    name, title, dataset, demo_name = "inpaint", "inpaint (Context Encoder)", "celeba", "face"
    # Pathak et al. 2016 and their train.lua: 128x128 images, a 64x64 center patch, 4000-channel
    # bottleneck, loss 0.999 L2 + 0.001 adversarial, Adam 2e-4 (beta1 0.5) with G's lr 10x D's, batch 64,
    # 25 epochs. No average of G's weights: with BatchNorm's running statistics it scored below G
    # (docs/ema.md). overlapPred 4: the predicted patch reaches 4 px under the context, its loss weighted
    # 10x there.
    paper = dict(netG="context-encoder", image_size=128, load_size=128, batch_size=64, epochs=25, epochs_decay=0,
                 ngf=64, ndf=64, bottleneck=4000, rec_loss="l2", lambda_rec=0.999, val_images=500, ema=0.0,
                 overlap=4, lr_g_mult=None, precision="fp32")  # lr_g_mult None: defaults() gives train.lua's
    # Where the defaults differ (docs/defaults.md): the hole is the patch, no overlap; G's lr is D's; bf16
    # where the machine runs it natively (utils.resolve_precision). The demo keeps G's lr 10x, with which
    # its preset was chosen.
    departures = dict(overlap=0, lr_g_mult=1.0, precision="auto")
    demo_departures = dict(lr_g_mult=None)
    # The procedural demo, sized to finish in minutes on a 2-core CPU (see README).
    demo_preset = dict({**paper, **departures, **demo_departures}, image_size=64, load_size=64, batch_size=32,
                       epochs=10, epochs_decay=5, ngf=32, ndf=32, bottleneck=1000, val_images=128, demo_images=3200)
    score, baseline = "hole_psnr", "baseline_mean_hole_psnr"
    LAMBDA_ADV = 0.001  # the paper's adversarial weight, 1 - 0.999, when --lambda-rec is no such mix
    RING = 2  # px around the hole whose mean colour fills the border-mean baseline

    # --- flags and presets

    def train_flags(self):
        return {
            "--fill": dict(choices=["white", "mean", "zero"], default="white", help="colour of the hole"),
            "--hole-position": dict(choices=["center", "random"], default="center",
                                    help="where the hole is in training images"),
            "--bottleneck": dict(type=utils.POSITIVE_INT, help=f"Context Encoder bottleneck channels "
                                 f"(default: {self.preset_help('bottleneck')})"),
            "--overlap": dict(type=utils.NATURAL, help=f"px of the predicted patch left visible around the hole, "
                              f"weighted {OVERLAP_WEIGHT:g}x in the loss (default: {self.preset_help('overlap')})"),
        }

    def train_notes(self):
        return (f"With --task {self.name}. As in the Context Encoder's code, while 0 < --lambda-rec < 1 the "
                f"adversarial\nweight is 1 - lambda_rec; with --paper, and in the demo, G's lr is then "
                f"{G_LR_RATIO:g}x D's. --netD is\ncontext with the Context Encoder, patch with --netG unet.")

    def generate_flags(self):
        return {"--mask": dict(default="auto", help="'auto' (a white square near the center is the hole, else the "
                               "center is blanked), 'center', or a mask image (white = hole)")}

    def generate_settings(self, args):
        """--mask as given, or the mask file's whole path."""
        settings = super().generate_settings(args)
        if settings["mask"] not in MASK_MODES:
            settings["mask"] = utils.shown(Path(settings["mask"]).resolve())
        return settings

    def defaults(self, cfg):
        """The Context Encoder's D judges the patch and the PatchGAN the pair; the patch is half the image
        side; the adversarial weight (1 - w) * adv + w * rec and the original code's 10x generator lr that
        goes with that mix; BatchNorm at test time as in training."""
        mixed = 0 < cfg.lambda_rec < 1
        context_encoder = cfg.netG == "context-encoder"
        per_image = cfg.batch_size == 1 and not context_encoder  # its 1x1 bottleneck has no image statistics
        return dict(netD="context" if context_encoder else "patch", patch=cfg.image_size // 2,
                    lambda_adv=1 - cfg.lambda_rec if mixed else self.LAMBDA_ADV,
                    lr_g_mult=G_LR_RATIO if mixed and context_encoder else 1.0,
                    norm_stats="image" if per_image else "running")

    def problems(self, cfg):
        problems = []
        if cfg.netG == "context-encoder" and cfg.netD == "patch":
            problems.append("the Context Encoder predicts a patch: use --netD context with it")
        if cfg.netG == "unet" and cfg.netD == "context":
            problems.append("--netD context judges the Context Encoder's patch alone, not a whole image: use "
                            "--netD patch with --netG unet")
        if not 0 <= 2 * cfg.overlap < cfg.patch:
            problems.append(f"--overlap {cfg.overlap} leaves no hole in a {cfg.patch} px patch")
        if cfg.netG == "context-encoder" and cfg.norm == "instance":
            problems.append("the Context Encoder's 1x1 bottleneck has no spatial statistics for --norm instance: "
                            "use --norm batch, or --netG unet")
        elif cfg.batch_size < self.smallest_batch(cfg):
            problems.append("the Context Encoder's 1x1 BatchNorm bottleneck needs --batch-size 2 or more")
        if cfg.norm_stats not in self.norm_stats_modes(cfg):
            problems.append("the Context Encoder's 1x1 bottleneck has no per-image statistics: use --norm-stats running")
        return problems

    def smallest_batch(self, cfg):
        """BatchNorm of a 1x1 map needs two images to have any statistics."""
        return 2 if cfg.netG == "context-encoder" and cfg.norm == "batch" else 1

    def norm_stats_modes(self, cfg):
        """The Context Encoder's 1x1 bottleneck has no per-image statistics."""
        return ("running",) if cfg.netG == "context-encoder" else ("image", "running")

    # --- the networks

    def channels(self, netG):
        """RGB in (and the hole, for the U-Net), RGB out."""
        return (3, 3) if netG == "context-encoder" else (4, 3)

    def d_input(self, x, image, cfg):
        """The Context Encoder's D judges the patch alone; the PatchGAN judges (masked image, image)
        pairs, with the predicted hole shown in its real surroundings."""
        if cfg.netD == "context":
            return image
        hole = x[:, 3:]
        return torch.cat([x, x[:, :3] * (1 - hole) + image * hole], dim=1)

    # --- the data

    def transforms(self, cfg):
        return (InpaintTransform(cfg.image_size, cfg.patch, train=True, position=cfg.hole_position),
                InpaintTransform(cfg.image_size, cfg.patch, train=False))

    def draw(self, seed, size):
        """A face."""
        import demo  # here, not at the top: generate.py imports this file, and never needs the demo
        return demo.draw_face(seed, size)

    def demo_side(self, cfg):
        return cfg.image_size

    def demo_input(self, drawing):
        """The face with its center covered by a white square, which generate.py finds (--mask auto)."""
        top, left, h, w = center_hole(drawing.height, drawing.width, DEMO_HOLE_FRACTION)
        masked = drawing.copy()
        masked.paste((255, 255, 255), (left, top, left + w, top + h))
        return masked

    def batch_to_xy(self, batch, cfg, device):
        """uint8 RGB images and patch boxes -> Masked."""
        rgb, boxes = batch[0].to(device, non_blocking=True), batch[1]  # boxes stay on the CPU: no GPU sync
        x, y, weight, hole, real = inpaint_pair(rgb, boxes, cfg.patch, cfg.overlap, cfg.fill, cfg.netG)
        return Masked(x, y, weight=weight, hole=hole, boxes=boxes, real=real)

    # --- what is shown and scored

    def pictures(self, xy, fake, cfg):
        """Masked, repaired (prediction inside the hole only), real."""
        repaired = inpaint_output(xy.x, fake, xy.boxes, xy.hole, cfg.netG)
        return (xy.x[:, :3] + 1) / 2, (repaired + 1) / 2, (xy.real + 1) / 2

    def scores(self, inp, out, target, hole=None):
        """Scores inside the hole (the Context Encoder paper's mean L1, mean L2 and PSNR, on images in
        [0, 1]) and on the whole image, for the output and two fills that need no network: white, and the
        mean colour of a ring of RING px around it (as an 8-bit colour)."""
        ring = F.max_pool2d(hole, 2 * self.RING + 1, stride=1, padding=self.RING) - hole
        # On the 8-bit scale, in integers: a mean of exactly .5 rounds up, as it would in any other program.
        ring_sum = (torch.round(target * 255) * ring).sum((2, 3), keepdim=True)
        ring_mean = torch.floor(ring_sum / ring.sum((2, 3), keepdim=True).clamp_min(1) + 0.5) / 255
        area = 3 * hole.sum((1, 2, 3))  # values inside the hole, per image
        scores = {}
        for prefix, image in {"": out, "baseline_white_": target * (1 - hole) + hole,
                              "baseline_mean_": target * (1 - hole) + ring_mean * hole}.items():
            err = (image - target) * hole
            l2 = (err**2).sum((1, 2, 3)) / area
            scores.update({f"{prefix}hole_l1": err.abs().sum((1, 2, 3)) / area, f"{prefix}hole_l2": l2,
                           f"{prefix}hole_psnr": utils.psnr_of_mse(l2),
                           f"{prefix}psnr": utils.psnr(image, target), f"{prefix}ssim": utils.ssim(image, target)})
        return scores

    def score_image(self, out, reference, hole):
        """Scored inside the hole that generate.py filled."""
        if hole is None or hole.shape != tuple(out.shape[-2:]) or not hole.any():
            raise ValueError("inpaint scores need the output's hole")
        return self.scores(None, out, reference, torch.as_tensor(hole, dtype=out.dtype)[None, None])

    # --- generate.py: any photo at full resolution

    def setup_generation(self, run):
        """The Context Encoder at its training size only, and the --mask file read (run.mask_image)."""
        cfg, run.mask_image = run.cfg, None
        if cfg.netG == "context-encoder" and run.size != cfg.image_size:
            raise SystemExit(f"error: the Context Encoder only works at its training size {cfg.image_size}")
        if run.norm_stats not in self.norm_stats_modes(cfg):
            raise SystemExit("error: --norm-stats image is not for the Context Encoder: its 1x1 bottleneck has no "
                             "per-image statistics")
        multiple = 2 ** len(getattr(run.G, "downs", []))
        if run.size % multiple or run.size < multiple:  # a square context, not padded
            raise SystemExit(f"error: --size {run.size} must be a multiple of {multiple} for this U-Net")
        if run.mask not in MASK_MODES:
            try:
                run.mask_image = np.asarray(images.load_image(run.mask).convert("L")) >= HALF_LEVEL
            except Exception as e:  # whatever PIL raises for a bad file
                raise SystemExit(f"error: cannot read --mask {run.mask}: {utils.one_line(e)}")

    def image_to_input(self, src, run):
        """x (the context square with the hole filled; and the hole, for the U-Net), the hole at the
        network size, the hole's box in the image and the context square's place."""
        cfg = run.cfg
        page = images.read_page(src, run.max_pixels)
        net_hole = cfg.patch - 2 * cfg.overlap
        box, how = find_hole(page, run.mask, run.mask_image, net_hole / cfg.image_size)
        context = context_box(box, run.size, net_hole * run.size // cfg.image_size)
        small, small_hole = context_pixels(page, box, hole_inside(box, run.mask_image), context, run.size)
        hole = small_hole[None].float()  # (1, s, s)
        masked = fill_hole(small[None].float() / 127.5 - 1, hole[None], cfg.fill)[0]
        x = masked if cfg.netG == "context-encoder" else torch.cat([masked, hole])
        return dict(x=x, hole=hole, box=box, context=context, how=how)

    def finish_image(self, item, fake, page, run):
        """-> (input band, repaired band) for each band of the page: G's repaired context square, sampled
        at the hole's pixels and pasted there only."""
        s = item["x"].shape[-1]
        boxes = torch.tensor([center_box(s, s // 2)])
        repaired = inpaint_output(item["x"][None], fake[None], boxes, item["hole"][None], run.cfg.netG)
        top, left, h, w = item["box"]
        inside = hole_inside(item["box"], run.mask_image)
        x0, y0, x1, y1 = item["context"]
        # grid_sample coordinates in [-1, 1] of the network image, for each pixel center of the hole's box.
        gx = (torch.arange(left, left + w) + 0.5 - x0) / (x1 - x0) * 2 - 1
        for r0, band in images.bands(page):
            out = images.as_rgb(band).copy()
            first, last = max(r0, top), min(r0 + len(band), top + h)  # the band's rows of the hole's box
            if first < last:
                gy = (torch.arange(first, last) + 0.5 - y0) / (y1 - y0) * 2 - 1
                grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()  # (1, rows, w, 2)
                patch = F.grid_sample(repaired, grid, mode="bicubic", padding_mode="border", align_corners=False)
                patch = ((patch[0] + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
                region = hole_window(item["box"], inside, left, first, left + w, last)
                out[first - r0:last - r0, left:left + w][region] = patch[region]
            yield band, out

    def output_hole(self, item, size, run):
        """The hole that was filled."""
        return hole_window(item["box"], hole_inside(item["box"], run.mask_image), 0, 0, *size)


TASK = Inpaint()
