"""Colorize or inpaint a folder of images with a checkpoint from train.py, at the images' own resolution.

    python generate.py --checkpoint runs/colorize/last.pt --input scans/ --output colored/
    python generate.py --checkpoint runs/inpaint/best.pt --input photos/ --output repaired/ --save-comparison
    python generate.py --checkpoint last.pt --input gray/ --output colored/ --reference originals/   # + scores.csv
    python generate.py --checkpoint last.pt --input photo.jpg --output out/ --mask hole.png --device cuda

The task, the network and its resolution come from the checkpoint. --input is a file or a folder
(walked recursively, following links but entering every real folder once); outputs mirror the relative
paths in --output as PNG. Inputs are never written: an --output inside --input is refused. Unreadable
images and images over --max-pixels (read from the header, before decoding) are reported with their
reason and skipped, and the exit status is 1 if any failed.

Colorize: the network sees the image's L at the image's own aspect, its shorter side at the network
size; the predicted ab channels are upsampled to the original size and joined to the ORIGINAL L
channel, so the line art stays sharp.
Inpaint: the square around the hole is processed at the network size, and the prediction is pasted back
only inside the hole: every other pixel is bit-identical to the input.
Both put the result together at full resolution a band of rows at a time: memory follows the band, not
the page. --workers processes each take whole images through decoding, the network and the PNG.
"""
import argparse
import collections
import contextlib
import json
import math
import multiprocessing
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import model
import tasks
import utils

WHITE_THRESHOLD = 230  # a JPEG-compressed white square stays above this in every channel
MIN_SQUARE_FRACTION = 0.1  # a white square smaller than this share of the image side is no hole
SQUARE_FILL = 0.97  # share of white pixels inside a detected square
EDGE_GROW_THRESHOLD = 200  # JPEG ringing: rows around the square this bright belong to the hole


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # data
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--input", required=True, help="an image or a folder of images (recursive)")
    p.add_argument("--output", required=True, help="folder for the PNG results (never inside --input)")
    p.add_argument("--max-pixels", type=int, default=2 * Image.MAX_IMAGE_PIXELS, help="skip larger images, "
                   "judged from the header (default: Pillow's decompression-bomb limit, about 179 megapixels)")
    p.add_argument("--mask", default="auto", help="inpaint: 'auto' (a white square near the center is the "
                   "hole, else the center is blanked), 'center', or a mask image (white = hole)")
    p.add_argument("--save-comparison", action="store_true", help="also write <name>.comparison.png [input | output]")
    p.add_argument("--overwrite", action="store_true", help="redo images whose output exists")
    p.add_argument("--reference", type=reference_folder, help="folder of the true images (same relative paths, "
                   "any extension): score the outputs written into OUTPUT/scores.csv and scores.json")
    # model at test time
    p.add_argument("--size", type=int, help="network resolution; colorize: of the shorter side (default: the training size)")
    p.add_argument("--aspect", choices=["keep", "squash"], default="keep", help="colorize: the network sees the image "
                   "at its own aspect (as in training), or squashed to a --size square (as before; see README)")
    p.add_argument("--norm-stats", choices=model.NORM_STATS, help="BatchNorm statistics: each image's own or the "
                   "running averages of training (default: the checkpoint's choice, else running)")
    p.add_argument("--dropout", choices=["off", "on"],
                   help="dropout at test time (default: the checkpoint's choice, else off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test-time dropout, combined with each image's path")
    # system
    p.add_argument("--batch-size", type=int, default=8, help="images per network batch")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast precision (auto: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory format (default; the U-Net's transposed convolutions are 25%% faster on a CPU)")
    p.add_argument("--workers", type=int, help="processes that each take their share of the images through "
                   "decoding, the network and the PNG (0 or 1: this process alone; default: one per CPU core)")
    return p


# ----------------------------------------------------------------------------------------------------
# Pages. Each image is decoded twice: for its network input (a JPEG only at the scale that needs) and
# again for its output, which is put together a band of rows at a time. A process so holds one page at a
# time whatever the batch, and never a float copy of a page.

BAND_PIXELS = 2**20  # the full-resolution float work, a few dozen bytes a pixel, runs on this many at a time


def read_page(src, run, min_side=None):
    """An image file -> the page upright, in L or RGB; refused from its header when over --max-pixels."""
    return utils.to_8bit(utils.load_upright(src, min_side, run.max_pixels))


def bands(page):
    """(first row, uint8 rows) for consecutive bands of an L or RGB page: (rows, W) or (rows, W, 3)."""
    rows = max(1, BAND_PIXELS // page.width)
    for top in range(0, page.height, rows):
        yield top, np.asarray(page.crop((0, top, page.width, min(page.height, top + rows))))


def as_rgb(band):
    return band if band.ndim == 3 else np.repeat(band[..., None], 3, axis=2)


# ----------------------------------------------------------------------------------------------------
# Colorize: the network sees the image's L at the image's own aspect (as in training, which crops and
# never squashes), reflect-padded to the U-Net's multiple; the predicted ab, cropped back, is upsampled
# to the page and joined to the page's own L.

MAX_ASPECT = 8  # the network's time grows with the padded area: a longer side past 8 x --size shrinks the image


def colorize_shape(width, height, size):
    """The (w, h) an image is resized to for the network: the shorter side `size`, the longer side at
    most MAX_ASPECT * size (a 64x2000 strip at 256 becomes 66x2048; its ab is upsampled anyway)."""
    scale = min(size / min(width, height), MAX_ASPECT * size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_colorize(src, run):
    """-> the network input x = L/50 - 1 (1, H, W), and where the resized image lies in its padding."""
    page = read_page(src, run, min_side=run.size)
    w, h = colorize_shape(*page.size, run.size) if run.aspect == "keep" else (run.size, run.size)
    small = np.asarray(page.resize((w, h), Image.BICUBIC, reducing_gap=3.0))
    L = 116 * utils.lab_f(utils.luminance(small)) - 16
    multiple = 2 ** len(run.G.downs)  # each down block halves the image, down to 1 pixel
    pad_h, pad_w = -h % multiple, -w % multiple
    top, left = pad_h // 2, pad_w // 2
    x = np.pad(L / utils.L_SCALE - 1, ((top, pad_h - top), (left, pad_w - left)), mode="reflect")
    return dict(x=torch.from_numpy(x)[None], crop=(top, left, h, w))


def finish_colorize(item, fake, page, run):
    """-> (input band, colorized band) for each band of the page: G's ab (2, H, W), cropped out of the
    padding and upsampled to the page, joined to each band's own L."""
    top, left, h, w = item["crop"]
    ab = fake[:, top:top + h, left:left + w].numpy() * utils.AB_SCALE  # (2, h, w) in Lab units
    first, second, weight = linear_taps(page.height, h)
    for r0, band in bands(page):
        rows = slice(r0, r0 + len(band))
        ab_rows = ab[:, first[rows]] * (1 - weight[rows, None]) + ab[:, second[rows]] * weight[rows, None]
        a, b = F.interpolate(torch.from_numpy(ab_rows), size=page.width, mode="linear", align_corners=False).numpy()
        Y = utils.luminance(band)
        yield band, utils.lab_to_srgb8(Y, utils.lab_f(Y), a, b)


def linear_taps(n_out, n_in):
    """Linear resampling of rows as F.interpolate(align_corners=False) does it, but for any band of
    output rows: for each output row its two input rows and the second one's weight."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
    first = np.minimum(src.astype(np.int64), n_in - 1)
    return first, np.minimum(first + 1, n_in - 1), (src - first).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Inpaint: the square around the hole is processed at the network size, and the prediction is pasted
# back only inside the hole: every other pixel is bit-identical to the input. A hole is a box (top,
# left, h, w) of the image: all of it, or (a mask file) the pixels of the box that the mask marks.


def prepare_inpaint(src, run):
    """-> the network input x (the context square with the hole filled; and the hole, for the U-Net),
    the hole at the network size, the hole's box in the image and the context square's place."""
    cfg = run.cfg
    page = read_page(src, run)
    net_hole = cfg["patch"] - 2 * cfg["overlap"]
    box, how = find_hole(page, run.mask, run.mask_image, net_hole / cfg["image_size"])
    context = context_box(box, run.size, net_hole * run.size // cfg["image_size"])
    small, small_hole = context_pixels(page, box, hole_inside(box, run.mask_image), context, run.size)
    hole = small_hole[None].float()  # (1, s, s)
    masked = utils.fill_hole(small[None].float() / 127.5 - 1, hole[None], cfg["fill"])[0]
    x = masked if cfg["netG"] == "context-encoder" else torch.cat([masked, hole])
    return dict(x=x, hole=hole, box=box, context=context, how=how)


def finish_inpaint(item, fake, page, run):
    """-> (input band, repaired band) for each band of the page: G's repaired context square, sampled
    at the hole's pixels and pasted there only."""
    s = item["x"].shape[-1]
    boxes = torch.tensor([utils.center_box(s, s // 2)])
    repaired = utils.inpaint_output(item["x"][None], fake[None], boxes, item["hole"][None], run.cfg["netG"])
    top, left, h, w = item["box"]
    inside = hole_inside(item["box"], run.mask_image)
    x0, y0, x1, y1 = item["context"]
    # grid_sample coordinates in [-1, 1] of the network image, for each pixel center of the hole's box.
    gx = (torch.arange(left, left + w) + 0.5 - x0) / (x1 - x0) * 2 - 1
    for r0, band in bands(page):
        out = as_rgb(band).copy()
        first, last = max(r0, top), min(r0 + len(band), top + h)  # the band's rows of the hole's box
        if first < last:
            gy = (torch.arange(first, last) + 0.5 - y0) / (y1 - y0) * 2 - 1
            grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()  # (1, rows, w, 2)
            patch = F.grid_sample(repaired, grid, mode="bicubic", padding_mode="border", align_corners=False)
            patch = ((patch[0] + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            region = hole_window(item["box"], inside, left, first, left + w, last)
            out[first - r0:last - r0, left:left + w][region] = patch[region]
        yield band, out


def find_white_square(darkest):
    """The white square painted around the center of an image, from the darkest channel of each pixel
    (H, W) uint8, as (top, left, h, w), or None if there is none (a white shirt or background is not a
    square hole)."""
    H, W = darkest.shape
    cy, cx = H // 2, W // 2
    if darkest[cy, cx] < WHITE_THRESHOLD:
        return None

    def run(line, start, step):  # how far the white run from `start` goes in one direction
        i = start
        while 0 <= i + step < len(line) and line[i + step]:
            i += step
        return i

    column, row = darkest[:, cx] >= WHITE_THRESHOLD, darkest[cy] >= WHITE_THRESHOLD
    top, bottom = run(column, cy, -1), run(column, cy, 1)
    left, right = run(row, cx, -1), run(row, cx, 1)
    h, w = bottom - top + 1, right - left + 1
    touches_border = top == 0 or left == 0 or bottom == H - 1 or right == W - 1
    if touches_border or min(h, w) < MIN_SQUARE_FRACTION * min(H, W) or not 0.8 <= h / w <= 1.25:
        return None
    if (darkest[top:bottom + 1, left:right + 1] >= WHITE_THRESHOLD).mean() < SQUARE_FILL:
        return None

    def bright(line):
        return (line >= EDGE_GROW_THRESHOLD).mean() > 0.9

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
    return np.concatenate([band.min(axis=2) if band.ndim == 3 else band for _, band in bands(page)])


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


BICUBIC_REACH = 2  # Pillow's bicubic filter reads 2 pixels on either side, in the smaller image's pixels


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
    return utils.pil_to_tensor(utils.to_rgb(small)), torch.from_numpy(np.asarray(small_hole) >= 128)


def edge_window(page, context, pad, size):
    """What resizing the context square reads of the page edge-padded by `pad`, as RGB -> (window, its
    top-left corner in the page): the same pixels as the whole page padded, without that copy."""
    x0, y0, x1, y1 = context
    W, H = page.size
    reach = BICUBIC_REACH * max(1, (x1 - x0) / size)
    wx0, wy0 = max(-pad, math.floor(x0 - reach)), max(-pad, math.floor(y0 - reach))
    wx1, wy1 = min(W + pad, math.ceil(x1 + reach)), min(H + pad, math.ceil(y1 + reach))
    inner = as_rgb(np.asarray(page.crop((max(wx0, 0), max(wy0, 0), min(wx1, W), min(wy1, H)))))
    window = np.pad(inner, ((max(0, -wy0), max(0, wy1 - H)), (max(0, -wx0), max(0, wx1 - W)), (0, 0)), mode="edge")
    return Image.fromarray(window), (wx0, wy0)


# What each task does to a full-size image (everything else that differs between the tasks is in tasks.py):
# prepare its network input, then finish its output band by band.
FULL_SIZE = {"colorize": (prepare_colorize, finish_colorize), "inpaint": (prepare_inpaint, finish_inpaint)}


# ----------------------------------------------------------------------------------------------------
# One process's work: every image of a chunk decoded for its network input, the network run on
# batches of one input shape, every image decoded again and finished a band at a time.


def prepare(job, run):
    """A job (source, destination, key) -> its item: the network input and what finishing needs, or
    the reason it failed."""
    src, dst, key = job
    item = dict(src=src, dst=dst, key=key)
    try:
        item.update(FULL_SIZE[run.cfg["task"]][0](src, run))
    except Exception as e:  # a bad file is reported with its reason, the others go on
        item["error"] = utils.one_line(e)
    return item


def batches(items, size):
    """Batches of at most `size` items with one network input shape each."""
    shapes = {}
    for item in items:
        shapes.setdefault(tuple(item["x"].shape), []).append(item)
    return [same[i:i + size] for same in shapes.values() for i in range(0, len(same), size)]


@torch.no_grad()
def run_network(batch, run):
    """G's outputs (B, C, H, W) on the CPU; each image's is the same whatever else is in its batch."""
    x = torch.stack([item["x"] for item in batch]).to(run.device)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seeds = [model.image_seed(run.seed, item["key"]) for item in batch]
    with utils.autocast(run.device, run.precision), model.test_time(run.G, run.norm_stats, run.dropout == "on", seeds):
        return run.G(x).float().cpu()


def finish(item, fake, run):
    """Decode the image again and write its output (and comparison) band by band; score it if asked."""
    try:
        page = read_page(item["src"], run)
        pieces = FULL_SIZE[run.cfg["task"]][1](item, fake, page, run)
        output = write_outputs(item["dst"], page.size, pieces, run.save_comparison, keep=bool(run.reference))
        if run.reference:
            box = item.get("box")
            hole = hole_window(box, hole_inside(box, run.mask_image), 0, 0, *page.size) if box else None
            scored = dict(dst=item["dst"], hole=hole)
            item["scores"] = score_output(scored, output, run.reference, run.output, run.cfg["task"])
    except Exception as e:  # as in prepare: this image fails, the others go on
        item["error"] = utils.one_line(e)


def write_outputs(dst, size, pieces, comparison, keep):
    """Stream (input band, output band) pairs into dst, and [input | output] into <name>.comparison.png
    -> the whole output if keep (to score it), else None."""
    W, H = size
    kept = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(utils.PngWriter(dst, W, H))
        both = stack.enter_context(utils.PngWriter(dst.with_suffix(".comparison.png"), 2 * W, H)) if comparison else None
        for band, result in pieces:
            out.write(result)
            if both:
                both.write(np.concatenate([as_rgb(band), result], axis=1))
            if keep:
                kept.append(result)
    return np.concatenate(kept) if keep else None


def process(jobs, run):
    """Jobs -> one record per job: its source and its error, or how its hole was found, or its scores."""
    items = [prepare(job, run) for job in jobs]
    for batch in batches([item for item in items if "error" not in item], run.batch_size):
        for item, fake in zip(batch, run_network(batch, run)):
            finish(item, fake, run)
    return [{k: item[k] for k in ("src", "error", "how", "scores") if k in item} for item in items]


# ----------------------------------------------------------------------------------------------------


def plan_jobs(input_path, output_dir, overwrite):
    """(source, destination, key) of every image, refusing any destination that is or would contain an
    input; the key, the source's path below --input, seeds the image's dropout."""
    input_path, output_dir = Path(input_path).resolve(), Path(output_dir).resolve()
    if not input_path.exists():
        raise SystemExit(f"error: --input {input_path} does not exist")
    root = input_path if input_path.is_dir() else input_path.parent
    if input_path.is_dir() and (output_dir == input_path or input_path in output_dir.parents):
        raise SystemExit(f"error: --output {output_dir} is inside --input {input_path}: inputs are never written over")
    files = utils.list_images(input_path, avoid=[output_dir])
    relative = [f.relative_to(root) for f in files]
    # a.jpg and a.png in one folder would both become a.png: name those a_jpg.png, a_png.png
    taken = collections.Counter(rel.with_suffix(".png") for rel in relative)

    def destination(rel):
        png = rel.with_suffix(".png")
        return output_dir / (png if taken[png] == 1 else rel.with_name(f"{rel.stem}_{rel.suffix[1:]}.png"))

    jobs = [(f, destination(rel), rel.as_posix()) for f, rel in zip(files, relative)]
    inputs = set(files)
    for _, dst, _ in jobs:
        if dst in inputs:
            raise SystemExit(f"error: the output {dst} would overwrite an input: choose another --output")
    return files, [job for job in jobs if overwrite or not job[1].exists()]


def load(args):
    """The run: args with their defaults resolved from the checkpoint, G on its device, the checkpoint's
    configuration, the mask file's hole. Exits with one line for what cannot work."""
    try:
        G, cfg = model.load_generator(args.checkpoint)  # the generator alone, memory-mapped
    except ValueError as e:
        raise SystemExit(f"error: cannot read checkpoint {e}")
    device = utils.pick_device(args.device)
    run = SimpleNamespace(**{**vars(args), "cfg": cfg, "device": device, "mask_image": None})
    run.size = args.size or cfg["image_size"]
    run.norm_stats = args.norm_stats or cfg.get("norm_stats", "running")
    run.dropout = args.dropout or cfg.get("dropout", "off")
    run.precision = utils.resolve_precision(args.precision, device)
    if cfg["netG"] == "context-encoder" and run.size != cfg["image_size"]:
        raise SystemExit(f"error: the Context Encoder only works at its training size {cfg['image_size']}")
    if cfg["netG"] == "context-encoder" and run.norm_stats == "image":
        raise SystemExit("error: --norm-stats image is not for the Context Encoder: its 1x1 bottleneck has no "
                         "per-image statistics")
    multiple = 2 ** len(getattr(G, "downs", []))
    if cfg["task"] == "inpaint" and (run.size % multiple or run.size < multiple):  # a square context, not padded
        raise SystemExit(f"error: --size {run.size} must be a multiple of {multiple} for this U-Net")
    if cfg["task"] == "inpaint" and args.mask not in ("auto", "center"):
        try:
            run.mask_image = np.asarray(utils.load_image(args.mask).convert("L")) >= 128
        except Exception as e:  # whatever PIL raises for a bad file
            raise SystemExit(f"error: cannot read --mask {args.mask}: {utils.one_line(e)}")
    run.G = G.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format)
    return run


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


worker_run = None  # the run of this process when it is a worker: its parent's when forked


def start_worker(args, threads):
    """A forked worker keeps its parent's run, whose weights it shares; a spawned one loads its own."""
    global worker_run
    torch.set_num_threads(threads)
    worker_run = worker_run or load(args)


def process_in_worker(jobs):
    return process(jobs, worker_run)


@contextlib.contextmanager
def worker_pool(run, args, workers):
    """`workers` processes sharing the CPU cores (None for 0). Whole images go to each, network
    included: the stages of one image never wait for each other across processes, and the network at
    1 thread per core uses the cores better than at 2 threads beside busy decoders."""
    if not workers:
        yield None
        return
    global worker_run
    threads = max(1, cpu_count() // workers)
    # fork is fast and shares this process's run, weights included, but a forked child hangs in GNU
    # OpenMP on more than one thread once its parent has used OpenMP, and cannot use CUDA once its
    # parent has: then the workers start afresh and load their own.
    method = "fork" if threads == 1 and run.device.type == "cpu" else "spawn"
    worker_run = run
    try:
        with multiprocessing.get_context(method).Pool(workers, start_worker, (args, threads)) as pool:
            yield pool
    finally:
        worker_run = None


def main(args):
    run = load(args)
    files, jobs = plan_jobs(args.input, args.output, args.overwrite)
    workers = min(cpu_count() if args.workers is None else args.workers, len(jobs))
    if workers == 1:  # a lone worker would only keep this process waiting: this process does the work
        workers = 0
    shape = f"shorter side {run.size}" if run.cfg["task"] == "colorize" else f"{run.size}x{run.size}"
    print(f"{run.cfg['task']}: {len(files)} images in {args.input}, {len(files) - len(jobs)} already done, "
          f"{len(jobs)} to do -> {args.output} ({run.device}, {shape}, {workers} worker processes)")
    # Chunks of a batch at most, and as many as the workers at least: 12 images on 2 workers are 6 + 6.
    chunk = max(1, min(args.batch_size, math.ceil(len(jobs) / max(1, workers))))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    failed, scores = [], []
    with worker_pool(run, args, workers) as pool, tqdm(total=len(jobs), unit="img", dynamic_ncols=True) as bar:
        for records in pool.imap(process_in_worker, chunks) if pool else (process(c, run) for c in chunks):
            for record in records:
                if "how" in record:
                    tqdm.write(f"{record['src']}: {record['how']}")
                if "error" in record:
                    failed.append((record["src"], record["error"]))
                if "scores" in record:
                    scores.append(record["scores"])
            bar.update(len(records))
    if args.reference:
        report_scores(scores, args.output)
    for src, reason in failed:
        print(f"failed: {src}: {reason}", file=sys.stderr)
    print(f"Done: {len(jobs) - len(failed)} written to {args.output}, {len(failed)} failed.")
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------------
# Scores against the true images (--reference): the metrics of training's validation (tasks.py), here
# at the outputs' full resolution and one image at a time, so that memory follows the largest image.

def reference_folder(path):
    if not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a folder")
    return path


def as_batch(rgb):
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def score_pair(task, output_rgb, reference_rgb, hole=None):
    """Scores of one output against its reference, (H, W, 3) uint8 each (inpaint: and the (H, W) bool
    hole that was filled) -> {metric: float}."""
    if output_rgb.shape != reference_rgb.shape:
        (h, w), (H, W) = reference_rgb.shape[:2], output_rgb.shape[:2]
        raise ValueError(f"the reference is {w}x{h}, the output {W}x{H}")
    if task == "inpaint" and (hole is None or hole.shape != output_rgb.shape[:2] or not hole.any()):
        raise ValueError("inpaint scores need the output's hole")
    scores = tasks.TASKS[task].score_image(as_batch(output_rgb), as_batch(reference_rgb), hole)
    return {k: float(v) for k, v in scores.items()}


def find_reference(reference_dir, rel):
    """The reference image for the output `rel` (a.png): reference_dir/a.<any image extension>. Stats a
    few names instead of listing the folder, which would be quadratic in a folder of 100k images."""
    for ext in sorted(utils.IMAGE_EXTENSIONS):
        for name in (rel.stem + ext, rel.stem + ext.upper()):
            if (reference_dir / rel.parent / name).is_file():
                return reference_dir / rel.parent / name
    return None


def score_output(item, out, reference_dir, output_dir, task):
    """One written output -> a scores row {"image": its path in output_dir, metric: value} or, when it
    cannot be scored, {"image", "error"}."""
    rel = Path(item["dst"]).resolve().relative_to(Path(output_dir).resolve())
    reference = find_reference(Path(reference_dir), rel)
    if reference is None:
        return {"image": str(rel), "error": f"no {rel.stem}.* in {Path(reference_dir) / rel.parent}"}
    try:
        return {"image": str(rel), **score_pair(task, out, np.array(utils.load_image(reference)), item.get("hole"))}
    except Exception as e:  # a broken reference file raises whatever PIL raises
        return {"image": str(rel), "error": f"{reference}: {utils.one_line(e)}"}


def write_scores(rows, out_dir):
    """OUT/scores.csv (a row per scored image) and OUT/scores.json (the means) -> the means."""
    scored = [row for row in rows if "error" not in row]
    utils.write_csv(Path(out_dir) / "scores.csv", scored)
    metrics = [k for k in scored[0] if k != "image"] if scored else []
    means = {k: float(np.mean([row[k] for row in scored])) for k in metrics}
    summary = {"images": len(scored), "not_scored": len(rows) - len(scored), "mean": means}
    (Path(out_dir) / "scores.json").write_text(json.dumps(summary, indent=2))
    return means


def report_scores(rows, out_dir):
    """Write the scores and print the means: the output beside each baseline."""
    means = write_scores(rows, out_dir)
    for row in rows:
        if "error" in row:
            print(f"not scored: {row['image']}: {row['error']}", file=sys.stderr)
    baselines = sorted({k.split("_")[1] for k in means if k.startswith("baseline_")})
    print(f"Scores of {len(rows) - sum('error' in r for r in rows)} images -> {Path(out_dir) / 'scores.csv'}")
    print(f"{'mean of':24}{'output':>10}" + "".join(f"{b:>10}" for b in baselines))
    for metric in (k for k in means if not k.startswith("baseline_")):
        cells = [means[metric]] + [means.get(f"baseline_{b}_{metric}") for b in baselines]
        print(f"{metric:24}" + "".join(f"{c:10.4g}" if c is not None else f"{'':10}" for c in cells))


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
