"""generate.py --reference: per-image scores against independent numpy computations on tiny images."""
import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

import generate
import images
import utils
from conftest import run_generate


def np_psnr(a, b):  # uint8 arrays
    return 10 * np.log10(255.0**2 / ((a.astype(np.float64) - b) ** 2).mean())


def np_ssim(a, b):
    """Mean SSIM over channels and 'valid' 11x11 Gaussian windows (sigma 1.5), images in [0, 1]."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    a, b = a / 255.0, b / 255.0

    def blur(t):  # (H, W, C) -> (H - 10, W - 10, C)
        return (sliding_window_view(t, (11, 11), axis=(0, 1)) * w).sum((-1, -2))

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean()


def np_colourfulness(rgb):
    R, G, B = np.moveaxis(rgb.astype(np.float64), -1, 0)
    rg, yb = R - G, (R + G) / 2 - B
    return np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)


def np_gray(rgb):
    """The same CIE L with no colour, as sRGB: linear luminance Y through the sRGB curve, 8-bit."""
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    Y = linear @ np.array([0.212671, 0.715160, 0.072169])
    v = np.where(Y <= 0.0031308, 12.92 * Y, 1.055 * Y ** (1 / 2.4) - 0.055)
    return np.repeat(np.floor(np.clip(v, 0, 1) * 255 + 0.5)[..., None], 3, axis=-1).astype(np.uint8)


def random_image(seed, shape=(16, 20, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_colorize_scores_match_numpy():
    out, ref = random_image(0), random_image(1)
    s = generate.score_pair("colorize", out, ref)
    assert s["psnr"] == pytest.approx(np_psnr(out, ref), rel=1e-5)
    assert s["ssim"] == pytest.approx(np_ssim(out, ref), abs=1e-5)
    assert s["colourfulness"] == pytest.approx(np_colourfulness(out), rel=1e-6)
    assert s["reference_colourfulness"] == pytest.approx(np_colourfulness(ref), rel=1e-6)
    gray = np_gray(ref)
    assert s["baseline_gray_psnr"] == pytest.approx(np_psnr(gray, ref), abs=0.02)
    assert s["baseline_gray_ssim"] == pytest.approx(np_ssim(gray, ref), abs=1e-3)
    assert s["ciede2000"] > 0 and s["baseline_gray_ciede2000"] > 0
    same = generate.score_pair("colorize", ref, ref)
    assert same["ciede2000"] == 0 and same["ssim"] == pytest.approx(1)


def test_gray_reference_is_its_own_gray_baseline():
    ref = np.repeat(random_image(2, (16, 20, 1)), 3, axis=-1)
    s = generate.score_pair("colorize", ref, ref)
    assert s["reference_colourfulness"] == 0 and s["baseline_gray_ciede2000"] < 0.5


def test_inpaint_scores_match_numpy():
    ref, out = random_image(3, (14, 16, 3)), random_image(3, (14, 16, 3))
    hole = np.zeros((14, 16), bool)
    hole[4:9, 5:11] = True
    hole[9:11, 5:7] = True  # an L shape: the ring follows any mask, not only boxes
    out[hole] = random_image(4, (int(hole.sum()), 3))
    ring = np.zeros_like(hole)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            ring |= np.roll(hole, (dy, dx), axis=(0, 1))  # the hole is far from the border: no wrap-around
    ring &= ~hole
    white, mean_fill = ref.copy(), ref.copy()
    white[hole] = 255
    mean_fill[hole] = np.floor(ref[ring].mean(0) + 0.5)
    s = generate.score_pair("inpaint", out, ref, hole)
    for prefix, image in {"": out, "baseline_white_": white, "baseline_mean_": mean_fill}.items():
        err = (image[hole].astype(np.float64) - ref[hole]) / 255
        assert s[f"{prefix}hole_l1"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
        assert s[f"{prefix}hole_l2"] == pytest.approx((err**2).mean(), rel=1e-5)
        assert s[f"{prefix}hole_psnr"] == pytest.approx(10 * np.log10(1 / (err**2).mean()), rel=1e-5)
        assert s[f"{prefix}psnr"] == pytest.approx(np_psnr(image, ref), rel=1e-5)
        assert s[f"{prefix}ssim"] == pytest.approx(np_ssim(image, ref), abs=1e-5)


def test_score_pair_refuses_mismatches():
    with pytest.raises(ValueError, match="reference is 20x16"):
        generate.score_pair("colorize", random_image(0, (8, 8, 3)), random_image(0))
    with pytest.raises(ValueError, match="hole"):
        generate.score_pair("inpaint", random_image(0), random_image(1))


def generate_with_reference(tmp_path, checkpoint, *flags):
    src, ref, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    for i, rel in enumerate(["a", "deep/b", "c.v2"]):
        image = random_image(10 + i, (24 + 4 * i, 30, 3))
        (src / rel).parent.mkdir(parents=True, exist_ok=True), (ref / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(src / f"{rel}.png")
        Image.fromarray(image).save(ref / f"{rel}.{'jpg' if i == 1 else 'png'}", quality=100)
    Image.fromarray(random_image(20)).save(src / "no_reference.png")
    status = run_generate(checkpoint, src, out, "--reference", ref, *flags)
    return status, ref, out, utils.read_csv(out / "scores.csv"), json.loads((out / "scores.json").read_text())


def test_generate_colorize_writes_scores(tmp_path, untrained, capsys):
    status, ref, out, rows, summary = generate_with_reference(tmp_path, untrained["colorize"])
    assert status == 0
    assert sorted(r["image"] for r in rows) == ["a.png", "c.v2.png", "deep/b.png"]
    assert summary["images"] == 3 and summary["not_scored"] == 1
    for key, mean in summary["mean"].items():
        assert mean == pytest.approx(np.mean([float(r[key]) for r in rows]))
    row = next(r for r in rows if r["image"] == "deep/b.png")
    output, reference = np.asarray(Image.open(out / "deep/b.png")), np.asarray(images.load_image(ref / "deep/b.jpg"))
    assert float(row["psnr"]) == pytest.approx(np_psnr(output, reference), rel=1e-5)
    printed = capsys.readouterr()
    assert "baseline_gray" not in printed.out and "gray" in printed.out and "ciede2000" in printed.out
    assert "not scored: no_reference.png" in printed.err


def test_generate_inpaint_scores_the_hole_it_filled(tmp_path, untrained):
    mask = np.zeros((24, 30), np.uint8)
    mask[6:14, 9:19] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    status, ref, out, rows, summary = generate_with_reference(tmp_path, untrained["inpaint"], "--mask", tmp_path / "mask.png")
    assert status == 1  # only a.png has the mask's size: the others fail to generate and are not scored
    assert [r["image"] for r in rows] == ["a.png"] and summary["not_scored"] == 0
    output, reference = np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(ref / "a.png"))
    hole = mask > 0
    err = (output[hole].astype(np.float64) - reference[hole]) / 255
    assert float(rows[0]["hole_l2"]) == pytest.approx((err**2).mean(), rel=1e-5)
    assert float(rows[0]["baseline_white_hole_l1"]) == pytest.approx(np.abs(1 - reference[hole] / 255).mean(), rel=1e-5)
