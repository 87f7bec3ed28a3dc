"""Image loading in every PIL mode, bad files, the transforms and the resumable sampler."""
import numpy as np
import pytest
import torch
from PIL import Image

import classes
import colorize
import demo
import images
import inpaint
import train
import utils
from conftest import organized_tree, tiny_args, truncate, write_image


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "I", "F"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    path = write_image(tmp_path / f"img.{fmt.lower()}", mode=mode, fmt=fmt)
    img = images.load_image(path)
    assert img.mode == "RGB" and img.size == (48, 40)


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    rgb = np.asarray(images.load_image(tmp_path / "16.png"))
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 100 < rgb[4, 32, 0] < 155


def test_transparency_is_composited_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(images.load_image(tmp_path / "clear.png")).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise for display
    Image.new("RGB", (30, 10), "red").save(tmp_path / "rotated.jpg", exif=exif)
    assert images.load_image(tmp_path / "rotated.jpg").size == (10, 30)


def test_jpeg_draft_keeps_the_needed_resolution(tmp_path):
    write_image(tmp_path / "scan.jpg", size=(2000, 3000))
    img = images.load_image(tmp_path / "scan.jpg", min_side=286)
    assert 286 <= min(img.size) < 1000  # decoded at 1/2 or 1/4 scale, never below 286


@pytest.mark.parametrize("make", ["empty", "truncated", "text", "directory-like"])
def test_unreadable_files_give_a_reason(tmp_path, make):
    path = tmp_path / "bad.jpg"
    if make == "empty":
        path.write_bytes(b"")
    elif make == "truncated":
        truncate(write_image(path, size=(200, 200)))
    elif make == "text":
        path.write_text("hello")
    else:
        path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    img, reason = images.try_load_image(path)
    assert img is None and reason


def test_dataset_skips_and_counts_bad_files(tmp_path):
    good = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    (tmp_path / "empty.jpg").write_bytes(b"")
    bad = truncate(write_image(tmp_path / "trunc.jpg", size=(100, 100)))
    files = [good[0], tmp_path / "empty.jpg", good[1], bad, good[2]]
    dataset = classes.ImageDataset(files, colorize.ColorizeTransform(32, 36, train=True))
    batches = [dataset[(i, 0, 0)][0] for i in range(len(dataset))]
    assert all(b.shape == (3, 32, 32) and b.dtype == torch.uint8 for b in batches)
    assert dataset.skipped.value == 2


def test_colorize_transform(tmp_path):
    small = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8))
    train, val = colorize.ColorizeTransform(64, 72, train=True), colorize.ColorizeTransform(64, 72, train=False)
    rng = np.random.default_rng(0)
    assert train(small, rng)[0].shape == (3, 64, 64)  # smaller than the crop: scaled up
    assert torch.equal(val(small, rng)[0], val(small, np.random.default_rng(5))[0])  # deterministic
    crops = {train(small, np.random.default_rng(s))[0].sum().item() for s in range(8)}
    assert len(crops) > 1  # random jitter


def test_inpaint_transform_random_box_stays_inside():
    img = Image.new("RGB", (178, 218), "gray")
    transform = inpaint.InpaintTransform(64, 32, train=True, position="random")
    for seed in range(200):
        image, box = transform(img, np.random.default_rng(seed))
        assert image.shape == (3, 64, 64) and 0 <= box.min() and box.max() <= 64 - 32
    assert inpaint.InpaintTransform(64, 32, train=False)(img, None)[1].tolist() == [16, 16]


def test_sampler_resumes_mid_epoch():
    dataset = list(range(50))
    full, late = classes.ResumableSampler(dataset, seed=3), classes.ResumableSampler(dataset, seed=3)
    full.set_epoch(2)
    late.set_epoch(2, start=20)
    assert list(late) == list(full)[20:] and len(late) == 30
    full.set_epoch(3)
    assert [i for i, _, _ in full] != [i for i, _, _ in late]  # another epoch, another order


def test_demo_datasets_are_deterministic():
    transform = colorize.ColorizeTransform(32, 36, train=True)
    a = demo.DemoDataset(demo.draw_panel, 36, 4, 0, transform)
    b = demo.DemoDataset(demo.draw_panel, 36, 4, 0, transform)
    assert torch.equal(a[(1, 0, 0)][0], b[(1, 0, 0)][0]) and not torch.equal(a[(1, 0, 0)][0], a[(2, 0, 0)][0])
    face = demo.draw_face(0, 64)
    assert face.size == (64, 64) and face.mode == "RGB"


def test_bad_files_in_a_run_are_reported_once_and_never_scored_twice(tmp_path, capsys):
    """Two passes with a validation each: every bad file is named once, counted once, and the scores hold
    each readable image once."""
    root = organized_tree(tmp_path / "tree", test=4)
    (root / "train" / "2.jpg").write_bytes(b"")
    truncate(root / "val" / "1.jpg")
    (root / "test" / "3.jpg").write_text("not a jpeg")
    train.main(tiny_args(tmp_path, "--data", root, "--batch-size", 2, "--epochs", 2, "--epochs-decay", 0))
    err = capsys.readouterr().err
    for bad in ("train/2.jpg", "val/1.jpg", "test/3.jpg"):
        assert err.count(f"{bad} (") == 1, err
    rows = utils.read_csv(tmp_path / "run" / "metrics.csv")
    assert [r["skipped_files"] for r in rows] == ["1", "1"]
    images = [r["image"] for r in utils.read_csv(tmp_path / "run" / "test_scores.csv")]
    assert len(images) == len(set(images)) == 3 and not any(i.endswith("3.jpg") for i in images)
