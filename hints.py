"""Colour hints for the colorizer (Zhang et al. 2017, "Real-Time User-Guided Image Colorization with
Learned Deep Priors", SIGGRAPH): beside L, G sees a map of ab hints and a weight of where they are.
colorize.py (the task, train.py --hints and generate.py --hints) asks this file for the mechanics:

- in training, hints sampled from the target: a random number of small square patches (none for about
  1 image in 8: the automatic case), each carrying the patch's mean ab (sample_patches, patch_means);
- in generate.py, a hint image that a person paints (DIR/REL/name.png for the input REL/name.ext): its
  pixels with alpha >= HINT_ALPHA are hints, their RGB the colour (read_hint_image), brought to the
  network's resolution by area so that a small dot on a large page does not vanish (network_hints),
  and drawn over the input where a person looks at it (shown_over);
- in both, with train.py --hints spread (the default), each hint spread over its region of the drawing
  before G sees it (spread); with --hints points G sees the points alone, as Zhang et al.'s network.

The hint map is (3, S, S): the hint's ab normalized as y is (0 where no hint), then the weight: 1 on a
hint, 0 where none is, and (spread) between them as far as a hint reaches. Colour math stays in
colorize.py, which passes its conversion in (network_hints' pair) and the drawing's L (spread's).
"""
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch

import images
import utils

CHANNELS = 3  # the hint's a and b, and the mask
# Training (Zhang et al. 2017, section 3.1): the number of patches is geometric with p = 1/8 from 0, so
# that 1 image in 8 gets none; each patch is a square of side uniform in 1..9 px at 256, centred at a
# point of a 2-D Gaussian around the image's center with sigma a quarter of the side (the paper's choice:
# a person hints the subject, seldom the margins), clipped so that the patch stays inside.
COUNT_P = 1 / 8
SIGMA_OF_SIDE = 1 / 4
# The largest patch: the paper's 9 px at 256, scaled with the image and rounded up (3 px at 64, 2 at 32), so
# that a small network still sees patches of more than one pixel, as the paper's sees 1 to 9.
PAPER_SIDE, PAPER_PATCH = 256, 9
HINT_ALPHA = 128  # a pixel of a hint image at least this opaque is a hint
VAL_HINTS = 10  # patches per image in the hinted scores of validation and the test split (hints10_...)
# Spreading (spread): a step costs its length in sides of the image plus EDGE per unit of L it crosses, so
# that crossing the image along a row of one flat colour keeps a weight of exp(-1), while an ink line (a
# change of L of 30 or more each way: 6 or more) ends a hint's region; past a distance of REACH a pixel is
# unhinted, as G sees pixels without hints in the automatic case. PASSES passes over the four directions
# follow a path that bends several times, around a wall and back up the other side of it.
EDGE, SCALE, PASSES, REACH = 0.1, 1.0, 2, 4.0
MODES = ("spread", "points")  # train.py --hints: spread over regions (the default), or Zhang et al.'s points


def mode(cfg):
    """A run's train.py --hints (a dict or a Namespace): None (no hints), "spread" or "points"; a run from
    before --hints took none, and one from before --hints spread took points (its True)."""
    hinted = (cfg if isinstance(cfg, dict) else vars(cfg)).get("hints")
    return "points" if hinted is True else hinted or None


def used(cfg):
    """Whether a run's G takes colour hints."""
    return mode(cfg) is not None


def for_network(cfg, L, hint_map):
    """What G sees of the sparse hint map (B, 3, H, W) on the drawing's L (B, H, W, Lab units): the map
    itself (points), or spread over the regions of L (spread)."""
    return spread(L, hint_map) if mode(cfg) == "spread" else hint_map


def largest_patch(side):
    """The largest hint patch's side on a side x side image: the paper's 9 at 256, scaled, rounded up."""
    return max(1, math.ceil(PAPER_PATCH * side / PAPER_SIDE))


def sample_count(rng):
    """The number of hint patches of a training image: geometric with p = COUNT_P, from 0."""
    return int(rng.geometric(COUNT_P)) - 1


def sample_patches(rng, side, count):
    """`count` hint patches on a side x side image, drawn from the numpy rng -> (side, side) int32 labels:
    0 where no hint, k over patch k (a later patch over an earlier one)."""
    labels = np.zeros((side, side), np.int32)
    for k in range(1, count + 1):
        p = int(rng.integers(1, largest_patch(side) + 1))
        top, left = np.clip(np.round(rng.normal(side / 2, SIGMA_OF_SIDE * side, 2)) - p // 2, 0, side - p).astype(int)
        labels[top:top + p, left:left + p] = k
    return labels


class WithPatches:
    """A transform, then `count` hint patches (sample_count's for None) drawn from the same per-image rng
    -> (its tensors, the (S, S) labels of sample_patches): each image gets its own, the same in a resumed
    run and at any batch size. The scoring loaders seed each image's rng by its index in its split."""

    def __init__(self, transform, count):
        self.transform, self.count, self.min_side = transform, count, transform.min_side

    def __call__(self, img, rng):
        tensors = self.transform(img, rng)
        count = sample_count(rng) if self.count is None else self.count
        return (*tensors, torch.from_numpy(sample_patches(rng, tensors[0].shape[-1], count)))


def with_patches(train, val):
    """The training and validation transforms with hint patches: a random number, and VAL_HINTS."""
    return WithPatches(train, None), WithPatches(val, VAL_HINTS)


def patch_means(ab, labels):
    """The hint map of the patches `labels` (B, H, W), on the CPU (their count is read without waiting for
    the GPU), over the target's ab (B, 2, H, W) -> (B, 3, H, W): each patch's mean ab over it, and the mask."""
    B, _, H, W = ab.shape
    n = int(labels.max()) + 1  # labels per image, 0 included
    slots = (labels.to(ab.device, torch.int64) + n * torch.arange(B, device=ab.device).view(B, 1, 1)).flatten()
    values = torch.cat([ab, torch.ones_like(ab[:, :1])], dim=1).permute(0, 2, 3, 1).reshape(-1, 3)  # (B H W, 3)
    sums = torch.zeros(B * n, 3, device=ab.device, dtype=ab.dtype).index_add_(0, slots, values)
    means = sums[:, :2] / sums[:, 2:].clamp_min(1)  # (B n, 2): each patch's mean ab
    mask = (labels > 0).to(ab.device, ab.dtype)[:, None]  # (B, 1, H, W)
    return torch.cat([means[slots].view(B, H, W, 2).permute(0, 3, 1, 2) * mask, mask], dim=1)


def test_inputs(xy):
    """A validation or test batch with its VAL_HINTS patches -> {"": with no hints, "hints10_": with them}."""
    unhinted = torch.cat([xy.x[:, :1], torch.zeros_like(xy.x[:, 1:])], dim=1)
    return {"": dataclasses.replace(xy, x=unhinted), f"hints{VAL_HINTS}_": xy}


# ----------------------------------------------------------------------------------------------------
# Hint images (generate.py --hints)


def check_generation(folder, hinted, checkpoint):
    """generate.py --hints `folder` (None: not given) for a G that is `hinted` or not: exits with one line
    for a G that takes no hints, or a folder that is not one."""
    if folder and not hinted:
        raise SystemExit(f"error: --hints: {utils.shown(checkpoint)} was trained without --hints and takes no hints")
    if folder and not os.path.isdir(folder):
        raise SystemExit(f"error: --hints {utils.shown(folder)} is not a folder")


def hint_file(src, inputs, folder):
    """The hint image of the input image `src` below --input `inputs`: folder/REL/name.png for the input
    REL/name.ext (REL/name.png for a single input file), or None where there is none."""
    root = Path(inputs).resolve()
    path = Path(folder) / Path(src).relative_to(root if root.is_dir() else root.parent).with_suffix(".png")
    return path if os.path.isfile(path) else None  # os.path's: False, not an error, for a name too long


def read_hint_image(path, max_pixels=None):
    """A hint image -> its pixels (h, w, 4) uint8 RGBA; ValueError with one line naming it if it cannot be
    read as an image or has no alpha channel (then every pixel of it would be a hint)."""
    try:
        with images.open_image(path, max_pixels) as img:
            alpha = "A" in img.getbands() or "transparency" in img.info
            pixels = np.asarray(img.convert("RGBA"))
    except Exception as e:  # whatever PIL raises for a file that is not an image
        raise ValueError(f"hint file {utils.shown(path)} cannot be read ({utils.one_line(e)})") from None
    if not alpha:
        raise ValueError(f"hint file {utils.shown(path)} has no alpha channel (paint the hints on a transparent layer)")
    return pixels


def nearest(n_out, n_in):
    """Nearest-neighbour resampling of n_in pixels to n_out: for each output pixel the input pixel whose
    span holds its center."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def network_hints(rgba, page_size, shape, pair):
    """A hint image (hh, hw, 4), scaled to the page (W, H) by nearest (no new colours), brought to the
    network's (w, h) by area -> the hint map (3, h, w) float32: a network pixel is a hint where any hint
    pixel of the page falls in it, with the mean ab of those, normalized by `pair` (colorize.colorize_pair:
    uint8 RGB (B, 3, H, W) -> (x, y)). Works on the page rows that hold hints, a band at a time."""
    (W, H), (w, h) = page_size, shape
    opaque = rgba[..., 3] >= HINT_ALPHA
    rows_of, cols_of = nearest(H, len(rgba)), nearest(W, rgba.shape[1])  # the hint pixel each page row/column takes
    hinted_rows = np.flatnonzero(opaque.any(axis=1)[rows_of])
    network_col = np.arange(W) * w // W  # the network column each page column falls in
    sums = np.zeros((3, h * w))  # a's, b's and the count of hint pixels in each network pixel
    step = max(1, images.BAND_PIXELS // W)
    for i in range(0, len(hinted_rows), step):
        rows = hinted_rows[i:i + step]
        r, c = np.nonzero(opaque[rows_of[rows]][:, cols_of])
        cell = rows[r] * h // H * w + network_col[c]
        rgb = torch.from_numpy(rgba[rows_of[rows[r]], cols_of[c], :3])  # (n, 3)
        ab = pair(rgb.T[None, :, :, None])[1][0, :, :, 0].T.double().numpy()  # (n, 2)
        for channel, weights in enumerate((ab[:, 0], ab[:, 1], None)):
            sums[channel] += np.bincount(cell, weights, minlength=h * w)
    hinted = sums[2] > 0
    hint_map = np.zeros((3, h * w), np.float32)
    hint_map[:2, hinted] = sums[:2, hinted] / sums[2, hinted]
    hint_map[2] = hinted
    return hint_map.reshape(3, h, w)


def page_hints(path, page_size, L, pair, run):
    """The hint map (3, h, w) of a page's hint image `path` (None: none) for the page's L at the network's
    size (h, w), as the run's G takes it (for_network), and what to report (None: nothing): a hint image
    that cannot be used gives no hints, and says so."""
    h, w = L.shape
    none = np.zeros((CHANNELS, h, w), np.float32)
    if path is None:
        return none, None
    try:
        sparse = network_hints(read_hint_image(path, run.max_pixels), page_size, (w, h), pair)
    except ValueError as e:
        return none, f"{e}: generated without hints"
    return for_network(run.cfg, torch.from_numpy(L)[None], torch.from_numpy(sparse)[None])[0].float().numpy(), None


def shown_over_bands(pieces, path, page_size, max_pixels):
    """(input band, output band) pairs of a page (Task.finish_image) with the hint image `path` drawn over
    each input band, for the comparison and the thumbnail that show the input."""
    rgba, r0 = read_hint_image(path, max_pixels), 0
    for band, out in pieces:
        yield shown_over(band, r0, rgba, page_size), out
        r0 += len(band)


def shown_over(band, r0, rgba, page_size):
    """A band of the page's rows from row r0, (rows, W) or (rows, W, 3) uint8, with the hint image (scaled to
    the page by nearest) drawn over it: its hints in their colour -> (rows, W, 3), a new array."""
    W, H = page_size
    hint = rgba[nearest(H, len(rgba))[r0:r0 + len(band)]][:, nearest(W, rgba.shape[1])]  # (rows, W, 4)
    shown = images.as_rgb(band).copy()
    opaque = hint[..., 3] >= HINT_ALPHA
    shown[opaque] = hint[..., :3][opaque]
    return shown


# ----------------------------------------------------------------------------------------------------
# Spreading each hint over its region (train.py --hints spread, the default)


def spread(L, hint_map):
    """The hint map (B, 3, H, W) of sparse hints, spread over the drawing's L (B, H, W, in Lab units):
    each pixel takes the colour of the hint nearest to it along the drawing, where a step costs its length
    (in sides of the image) plus EDGE per unit of L it crosses, and the weight exp(-distance / SCALE) in the
    mask's place: 1 on a hint, near 1 over the hint's flat region; 0, and no colour, farther than REACH (past
    an ink line) and where there is no hint.
    This is the geodesic distance of Yatziv and Sapiro 2006 ("Fast image and video colorization using
    chrominance blending", IEEE TIP): G gets the region a colour belongs to, which a 64 px network does not
    learn to find from a dot in a short run (docs/hints.md)."""
    d = torch.where(hint_map[:, 2] > 0, 0.0, math.inf)
    ab = hint_map[:, :2]
    side = max(L.shape[-2:])
    for _ in range(PASSES):
        for turn in range(4):  # each direction, turned to run along the rows from the left
            L_t, d_t, ab_t = (torch.rot90(v, turn, (-2, -1)) for v in (L, d, ab))
            step = torch.zeros_like(L_t)
            step[..., 1:] = 1 / side + EDGE * (L_t[..., 1:] - L_t[..., :-1]).abs()
            d_t, ab_t = sweep(d_t, ab_t, step)
            d, ab = (torch.rot90(v, -turn, (-2, -1)) for v in (d_t, ab_t))
    weight = torch.exp(-d / SCALE) * (d <= REACH)
    return torch.cat([ab * (weight > 0)[:, None], weight[:, None]], dim=1)


def sweep(d, ab, step):
    """One pass along the rows from the left: d[i] = the least d[j] + step[j+1] + ... + step[i] over j <= i,
    a cumulative minimum of d - cumsum(step), and ab[i] = the ab of that j (d (B, H, W), ab (B, 2, H, W),
    step (B, H, W): the cost of entering each pixel from its left)."""
    C = step.cumsum(-1)
    d, j = (d - C).cummin(-1)
    return d + C, ab.gather(-1, j[:, None].expand_as(ab))
