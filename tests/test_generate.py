"""generate.py on folders of awkward real-world inputs, for both tasks."""
import io

import numpy as np
import pytest
from PIL import Image

import colorize
import inpaint
import train
from conftest import run_generate, tiny_args, truncate, write_image


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny trained runs: colorize, inpaint with the Context Encoder, inpaint with the U-Net."""
    root = tmp_path_factory.mktemp("runs")
    runs = {"colorize": [], "inpaint": [], "inpaint-unet": ["--netG", "unet"]}
    for name, flags in runs.items():
        train.main(tiny_args(root / name, *flags, "--epochs", 1, "--epochs-decay", 0, task=name.split("-")[0]))
    return {name: root / name / "run" / "last.pt" for name in runs}


def awkward_folder(root):
    """Tiny, very wide, gray, RGBA, palette, CMYK, 16-bit, EXIF-rotated, truncated, non-image, nested."""
    write_image(root / "tiny.png", size=(5, 3))
    write_image(root / "wide.jpg", size=(700, 40))
    write_image(root / "gray.png", mode="L")
    write_image(root / "rgba.png", mode="RGBA")
    write_image(root / "palette.gif", mode="P")
    write_image(root / "cmyk.jpg", mode="CMYK")
    Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)).save(root / "sixteen.png")
    rotated = Image.fromarray(np.zeros((20, 50, 3), np.uint8) + 120)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed: 50x20 stored, 20x50 shown
    rotated.save(root / "exif.jpg", exif=exif)
    truncate(write_image(root / "truncated.jpg", size=(64, 64), seed=3))
    (root / "notes.txt").write_text("not an image")
    (root / "fake.png").write_text("not a png either")
    write_image(root / "deep" / "er" / "panel.jpg", size=(33, 45))
    return root


def test_colorize_awkward_inputs(tmp_path, checkpoints):
    src = awkward_folder(tmp_path / "in")
    status = run_generate(checkpoints["colorize"], src, tmp_path / "out", "--batch-size", 3)
    assert status == 1  # two unreadable files
    expected = {"tiny": (5, 3), "wide": (700, 40), "gray": (48, 40), "rgba": (48, 40), "palette": (48, 40),
                "cmyk": (48, 40), "sixteen": (40, 30), "exif": (20, 50), "deep/er/panel": (33, 45)}
    for stem, size in expected.items():
        out = Image.open(tmp_path / "out" / f"{stem}.png")
        assert out.size == size and out.mode == "RGB", stem
    assert not (tmp_path / "out" / "truncated.png").exists() and not (tmp_path / "out" / "notes.png").exists()
    # Rerun: everything done is skipped, the failures are reported again.
    assert run_generate(checkpoints["colorize"], src, tmp_path / "out", "--batch-size", 3) == 1


def lightness(rgb):
    """(H, W, 3) uint8 sRGB -> (H, W) CIE L, in numpy."""
    c = np.arange(256) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    Y = linear[rgb] @ np.array([0.212671, 0.715160, 0.072169])
    return np.where(Y > (6 / 29) ** 3, 116 * np.cbrt(Y) - 16, Y * (29 / 3) ** 3)


def test_colorize_keeps_each_pages_size_and_lightness(tmp_path, untrained):
    """Full resolution, the page squashed to the network's square (the default) or at its own aspect (padded
    to at most 8:1, else shrunk): the output has the page's size and its L channel wherever colours are in
    gamut (8-bit rounding; a few out-of-gamut pixels may move more), and a wide panel is coloured
    differently either way."""
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(40, 200, (12, 20)), np.ones((25, 25)))[:290, :470].astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(blocks, "L").save(tmp_path / "in" / "blocks.png")
    write_image(tmp_path / "in" / "wide.png", size=(96, 40), seed=5)
    for name, size, network in [("tall", (64, 2000), (8, 256)), ("long", (2000, 64), (256, 8)),
                                ("large", (1500, 1000), (48, 32))]:  # large: in two bands
        assert colorize.network_shape(*size, 32) == network
        write_image(tmp_path / "in" / f"{name}.png", size=size, mode="L")
    for aspect in ("squash", "keep"):
        assert run_generate(untrained["colorize"], tmp_path / "in", tmp_path / aspect, "--aspect", aspect) == 0
    for page in (tmp_path / "in").iterdir():
        rgb = np.asarray(Image.open(page).convert("RGB"))
        for aspect in ("squash", "keep"):
            out = np.asarray(Image.open(tmp_path / aspect / page.name))
            assert out.shape == rgb.shape, (aspect, page.name)
            error = np.abs(lightness(rgb) - lightness(out))
            assert np.median(error) < 1.0, (aspect, page.name)
            assert page.name != "wide.png" or error.max() < 1.5, aspect
    keep, squash = (np.asarray(Image.open(tmp_path / aspect / "wide.png")) for aspect in ("keep", "squash"))
    assert not np.array_equal(keep, squash)


@pytest.mark.parametrize("net", ["inpaint", "inpaint-unet"])
@pytest.mark.parametrize("size", [(32, 32), (128, 96), (75, 200), (13, 11)])
def test_inpaint_changes_only_the_hole(tmp_path, checkpoints, net, size):
    write_image(tmp_path / "in" / "photo.png", size=size, seed=5)
    assert run_generate(checkpoints[net], tmp_path / "in", tmp_path / "out", "--save-comparison") == 0
    before = np.asarray(Image.open(tmp_path / "in" / "photo.png").convert("RGB"))
    after = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    H, W = before.shape[:2]
    top, left, h, w = inpaint.center_hole(H, W, 0.5)
    outside = np.ones((H, W), bool)
    outside[top:top + h, left:left + w] = False
    assert after.shape == before.shape
    assert np.array_equal(after[outside], before[outside])
    assert (tmp_path / "out" / "photo.comparison.png").exists()


def test_inpaint_white_square_is_the_hole(tmp_path, checkpoints):
    """A photo with a white square painted near the center: that square (not the center) is repaired,
    also after JPEG compression."""
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 200, (90, 120, 3)).astype(np.uint8)
    photo[30:70, 50:90] = 255  # 40x40, a bit off center
    Image.fromarray(photo).save(tmp_path / "in.png")
    assert inpaint.find_white_square(photo.min(axis=2)) == (30, 50, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
    top, left, h, w = inpaint.find_white_square(np.asarray(Image.open(buffer)).min(axis=2))
    assert abs(top - 30) <= 2 and abs(left - 50) <= 2 and abs(h - 40) <= 4 and abs(w - 40) <= 4
    assert run_generate(checkpoints["inpaint"], tmp_path / "in.png", tmp_path / "out") == 0
    after = np.asarray(Image.open(tmp_path / "out" / "in.png"))
    outside = np.ones(photo.shape[:2], bool)
    outside[30:70, 50:90] = False
    assert np.array_equal(after[outside], photo[outside]) and not np.array_equal(after, photo)


def test_no_white_square_in_a_plain_photo():
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert inpaint.find_white_square(photo.min(axis=2)) is None
    assert inpaint.find_white_square(np.full((64, 64), 255, np.uint8)) is None  # a white page is no hole


def test_inpaint_mask_file(tmp_path, checkpoints):
    write_image(tmp_path / "in" / "photo.png", size=(60, 50))
    mask = np.zeros((50, 60), np.uint8)
    mask[5:20, 30:50] = 255  # a hole away from the center
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert run_generate(checkpoints["inpaint-unet"], tmp_path / "in", tmp_path / "out", "--mask", tmp_path / "mask.png") == 0
    before = np.asarray(Image.open(tmp_path / "in" / "photo.png"))
    after = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert np.array_equal(after[mask == 0], before[mask == 0]) and not np.array_equal(after[mask > 0], before[mask > 0])


def test_output_inside_input_is_refused(tmp_path, checkpoints):
    write_image(tmp_path / "in" / "a.png")
    for out in (tmp_path / "in", tmp_path / "in" / "sub"):
        with pytest.raises(SystemExit, match="inside --input"):
            run_generate(checkpoints["colorize"], tmp_path / "in", out)
    with pytest.raises(SystemExit, match="overwrite an input"):
        run_generate(checkpoints["colorize"], tmp_path / "in" / "a.png", tmp_path / "in")
    assert sorted(p.name for p in (tmp_path / "in").rglob("*")) == ["a.png"]


def test_bad_checkpoint_is_one_line(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="cannot read checkpoint"):
        run_generate(tmp_path / "bad.pt", tmp_path, tmp_path / "out")
