"""colorize.py's upsampling of the predicted ab to the page, joint bilateral (guided by L, the default) and
bilinear, on pages built here, with the network's ab made from the page's own colour (nothing trained)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import colorize
import images

SIZE, FACTOR = 32, 8  # the network's side and the page's upsampling factor: a demo model on a 256-px page
JOINT_BILATERAL, BILINEAR = SimpleNamespace(ab_upsample="joint-bilateral"), SimpleNamespace(ab_upsample="bilinear")
VISIBLE_CHROMA = 1.0  # Lab units: under half the just-noticeable difference (2.3, Mahy et al. 1994); white's is 0.01


def as_lab(rgb):
    """(H, W, 3) uint8 -> (3, H, W) Lab."""
    return colorize.rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255)[0]


def network_item(page, ab_small):
    """What generate.py hands finish_image for a square page: G's input x (the L that G saw) and its
    output, here the given ab (2, SIZE, SIZE) in Lab units."""
    small = np.asarray(page.resize((SIZE, SIZE), Image.BICUBIC, reducing_gap=3.0))
    L = 116 * colorize.cie_f_table(colorize.luminance(small)) - 16
    item = dict(x=torch.from_numpy(L / colorize.L_SCALE - 1)[None], crop=(0, 0, SIZE, SIZE))
    return item, ab_small / colorize.AB_SCALE


def finish(item, fake, page, run):
    return np.concatenate([out for _, out in colorize.TASK.finish_image(item, fake, page, run)])


def ringed_disc():
    """A flat red disc inside a dark ink ring half a network pixel wide (as thin as a comic's line at the
    paper's network size), on white paper; and the mask of the paper outside the ring."""
    side = SIZE * FACTOR
    yy, xx = np.mgrid[:side, :side]
    radius = np.hypot(yy - side / 2 + 0.5, xx - side / 2 + 0.5)
    inner, ring = side * 0.3, FACTOR // 2
    rgb = np.full((side, side, 3), 255, np.uint8)
    rgb[radius < inner + ring] = (20, 18, 24)  # the ink of demo.py
    rgb[radius < inner] = (220, 40, 40)
    return rgb, radius >= inner + ring


def test_colour_stays_inside_the_ink_ring():
    """Given the disc's true colour at the network's size, bilinear spills it across the ring onto the
    paper; the default keeps it inside."""
    rgb, paper = ringed_disc()
    ab_small = F.interpolate(as_lab(rgb)[None, 1:], size=(SIZE, SIZE), mode="area")[0]  # a perfect network
    page = Image.fromarray(rgb).convert("L")
    item, fake = network_item(page, ab_small)
    leak = {}
    for name, run in {"joint-bilateral": JOINT_BILATERAL, "bilinear": BILINEAR}.items():
        chroma = torch.hypot(*as_lab(finish(item, fake, page, run))[1:])[torch.from_numpy(paper)]
        leak[name] = chroma[chroma > VISIBLE_CHROMA].sum()  # colour spilled onto the paper
    assert leak["bilinear"] > 1000 and leak["joint-bilateral"] < leak["bilinear"] / 100


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_bands_equal_the_whole_page(monkeypatch, mode):
    rng = np.random.default_rng(0)
    page = Image.fromarray(rng.integers(0, 256, (203, 157, 3)).astype(np.uint8)).convert(mode)
    x = torch.from_numpy(rng.uniform(-1, 1, (1, 48, 40)).astype(np.float32))
    fake = torch.from_numpy(rng.uniform(-0.8, 0.8, (2, 48, 40)).astype(np.float32))
    item = dict(x=x, crop=(5, 3, 40, 31))  # the image inside the network's padding
    whole = finish(item, fake, page, JOINT_BILATERAL)
    monkeypatch.setattr(images, "BAND_PIXELS", 157 * 10)  # bands of 10 rows
    monkeypatch.setattr(colorize, "JBU_CHUNK_PIXELS", 157 * 3)  # upsampled 3 rows at a time
    assert np.array_equal(finish(item, fake, page, JOINT_BILATERAL), whole)


def test_joint_bilateral_keeps_the_page_lightness():
    """The output's L is the page's wherever the colour is in gamut (8-bit rounding)."""
    rng = np.random.default_rng(1)
    gray = np.kron(rng.integers(40, 200, (12, 12)), np.ones((25, 25)))[:SIZE * FACTOR, :SIZE * FACTOR]
    page = Image.fromarray(gray.astype(np.uint8), "L")
    item, fake = network_item(page, torch.from_numpy(rng.uniform(-30, 30, (2, SIZE, SIZE)).astype(np.float32)))
    L_in = as_lab(np.repeat(np.asarray(page)[..., None], 3, 2))[0]
    L_out = as_lab(finish(item, fake, page, JOINT_BILATERAL))[0]
    assert (L_in - L_out).abs().median() < 1.0
