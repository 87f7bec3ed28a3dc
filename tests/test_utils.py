"""Lab colour, holes, metrics and checkpoint I/O."""
import pytest
import torch

import colorize
import inpaint
import utils


def pixels(*rgb):
    return torch.tensor(rgb, dtype=torch.float32).T.reshape(1, 3, len(rgb), 1)


def test_lab_known_values():
    """sRGB D65 references (as skimage.color.rgb2lab)."""
    lab = colorize.rgb_to_lab(pixels((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0, 0, 0), (0.5, 0.5, 0.5)))[0, :, :, 0].T
    expected = torch.tensor([[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86],
                             [100, 0, 0], [0, 0, 0], [53.39, 0, 0]])
    assert torch.allclose(lab, expected, atol=0.02)


def test_lab_round_trip():
    rgb = torch.rand(2, 3, 16, 16)
    assert torch.allclose(colorize.lab_to_rgb(colorize.rgb_to_lab(rgb)), rgb, atol=1e-4)


def test_colorize_pair_is_normalized():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    x, y = colorize.colorize_pair(images)
    assert x.shape == (4, 1, 8, 8) and y.shape == (4, 2, 8, 8)
    assert x.min() >= -1 and x.max() <= 1 and y.abs().max() <= 1
    assert torch.allclose(colorize.colorize_rgb(x, y), images.float() / 255, atol=1e-3)
    gray = colorize.colorize_rgb(x, torch.zeros_like(y))
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-3) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-3)


def test_hole_masks_and_overlap():
    boxes = torch.tensor([[16, 16], [0, 32]])
    area, hole = inpaint.box_mask(boxes, 64, 32), inpaint.box_mask(boxes, 64, 32, shrink=4)
    assert area.sum((1, 2, 3)).tolist() == [1024, 1024] and hole.sum((1, 2, 3)).tolist() == [576, 576]
    assert hole[1, 0, 4:28, 36:60].all() and hole[1, 0, :4].sum() == 0
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    x, y, weight, hole, real = inpaint.inpaint_pair(images, boxes, 32, 4, "white", "context-encoder")
    assert y.shape == (2, 3, 32, 32) and torch.equal(y[1], real[1, :, 0:32, 32:64])
    assert (x[hole.expand_as(x) > 0] == 1).all()  # the hole is white
    assert torch.equal(x[hole.expand_as(x) == 0], real[hole.expand_as(real) == 0])  # the rest untouched
    assert weight[0, 0, 0, 0] == inpaint.OVERLAP_WEIGHT and weight[0, 0, 16, 16] == 1
    x_unet, y_unet, w_unet, _, _ = inpaint.inpaint_pair(images, boxes, 32, 0, "mean", "unet")
    assert x_unet.shape == (2, 4, 64, 64) and y_unet.shape == (2, 3, 64, 64) and w_unet[0, 0, 0, 0] == 0


def test_inpaint_output_takes_only_the_hole():
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    boxes = torch.tensor([[8, 8], [8, 8]])
    hole = inpaint.box_mask(boxes, 32, 16, 2)
    x = inpaint.fill_hole(real, hole, "white")
    out = inpaint.inpaint_output(x, torch.zeros(2, 3, 16, 16), boxes, hole, "context-encoder")
    assert torch.equal(out[hole.expand_as(out) == 0], real[hole.expand_as(real) == 0])
    assert (out[hole.expand_as(out) > 0] == 0).all()


def test_metrics():
    a = torch.rand(3, 3, 32, 32)
    assert torch.allclose(utils.ssim(a, a), torch.ones(3))
    assert utils.ssim(a, torch.rand(3, 3, 32, 32)).max() < 0.2
    assert torch.allclose(utils.psnr(a, (a + 0.1)), torch.full((3,), 20.0), atol=1e-3)


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    state = {"G": {"w": torch.randn(3)}, "step": 7, "config": {"task": "colorize"}}
    utils.save_checkpoint(state, tmp_path / "last.pt")
    back = utils.load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(back["G"]["w"], state["G"]["w"]) and back["step"] == 7
    assert list(tmp_path.iterdir()) == [tmp_path / "last.pt"]  # no temporary file left
    with pytest.raises(SystemExit, match="does not exist"):
        utils.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="cannot read checkpoint"):
        utils.load_checkpoint(tmp_path / "empty.pt")
