"""The per-image metrics of utils.py against published values and independent numpy computations."""
import numpy as np
import pytest
import torch

import colorize
import utils

# Sharma, Wu and Dalal (2005), Table 1: L1, a1, b1, L2, a2, b2, dE00. The pairs probe the hue wrap at
# 180 degrees, zero chroma and the blue-region rotation term.
SHARMA_PAIRS = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def as_lab_images(rows):
    """(N, 3) Lab values -> (1, 3, 1, N): one image, one pixel per pair."""
    return torch.tensor(rows, dtype=torch.float64).T[None, :, None, :]


def test_ciede2000_matches_sharma_table():
    table = np.array(SHARMA_PAIRS)
    dE = colorize.ciede2000(as_lab_images(table[:, :3]), as_lab_images(table[:, 3:6]))
    assert dE.shape == (1, 1, len(SHARMA_PAIRS)) and dE.dtype == torch.float64
    np.testing.assert_allclose(dE[0, 0].numpy(), table[:, 6], atol=1e-4)


def test_ciede2000_is_symmetric_and_zero_on_equal_colours():
    rng = np.random.default_rng(0)
    table = np.array(SHARMA_PAIRS)
    lab1 = np.concatenate([table[:, :3], rng.uniform([0, -110, -110], [100, 110, 110], (200, 3))])
    lab2 = np.concatenate([table[:, 3:6], rng.uniform([0, -110, -110], [100, 110, 110], (200, 3))])
    lab1, lab2 = as_lab_images(lab1), as_lab_images(lab2)
    np.testing.assert_allclose(colorize.ciede2000(lab1, lab2).numpy(), colorize.ciede2000(lab2, lab1).numpy(), atol=1e-9)
    grays = as_lab_images([[0, 0, 0], [50, 0, 0], [100, 0, 0]])
    assert torch.equal(colorize.ciede2000(grays, grays), torch.zeros(1, 1, 3, dtype=torch.float64))


def test_mean_ciede2000_averages_pixels_of_each_image():
    rng = np.random.default_rng(1)
    a, b = torch.from_numpy(rng.random((2, 3, 5, 7))), torch.from_numpy(rng.random((2, 3, 5, 7)))
    per_pixel = colorize.ciede2000(colorize.rgb_to_lab(a), colorize.rgb_to_lab(b))
    np.testing.assert_allclose(colorize.mean_ciede2000(a, b).numpy(), per_pixel.mean((1, 2)).numpy(), rtol=1e-6)
    assert torch.equal(colorize.mean_ciede2000(a, a), torch.zeros(2, dtype=torch.float64))


def numpy_colourfulness(rgb):  # (H, W, 3) in [0, 255]
    R, G, B = rgb[..., 0].astype(np.float64), rgb[..., 1].astype(np.float64), rgb[..., 2].astype(np.float64)
    rg, yb = R - G, 0.5 * (R + G) - B
    return np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())


def test_colourfulness_matches_numpy_and_is_zero_for_gray():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 9, 11, 3)).astype(np.uint8)
    images[1] //= 4  # a duller one
    rgb = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    expected = [numpy_colourfulness(im) for im in images]
    np.testing.assert_allclose(colorize.colourfulness(rgb).numpy(), expected, rtol=1e-6)
    gray = torch.rand(2, 1, 9, 11).expand(2, 3, 9, 11)
    assert colorize.colourfulness(gray).abs().max() < 1e-9


@pytest.mark.parametrize("shape", [(1, 3, 4, 6), (3, 3, 8, 8)])
def test_l2_and_psnr_match_numpy(shape):
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 256, shape), rng.integers(0, 256, shape)
    mse_8bit = ((a - b) ** 2).reshape(shape[0], -1).mean(1)
    ta, tb = torch.from_numpy(a / 255), torch.from_numpy(b / 255)
    np.testing.assert_allclose(utils.l2(ta, tb).numpy(), mse_8bit / 255**2, rtol=1e-9)
    np.testing.assert_allclose(utils.psnr(ta, tb).numpy(), 10 * np.log10(255**2 / mse_8bit), rtol=1e-9)
