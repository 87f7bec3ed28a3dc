"""Colour hints (train.py --hints, generate.py --hints DIR): the networks' channels, the hints sampled in
training and drawn for validation, an exact resume, and the hint images of generate.py (scaled, by area,
the page's L kept, missing or broken files, a checkpoint that takes none)."""
import numpy as np
import pytest
import torch
from PIL import Image

import colorize
import generate
import hints
import model
import pages
import tasks
import train
import utils
from conftest import run_generate, tiny_args, write_image

RED, BLUE = (220, 30, 30), (30, 60, 220)


def hint_image(path, size, dots):
    """A hint image as a person paints one: transparent, with opaque pixels {(x, y): (r, g, b)}."""
    pixels = np.zeros((size[1], size[0], 4), np.uint8)
    for (x, y), rgb in dots.items():
        pixels[y, x] = (*rgb, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def ab_of(rgb):
    """Normalized ab of one colour."""
    return colorize.colorize_pair(torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1))[1].flatten().numpy()


def save_hinted(path, hinted):
    """An untrained tiny generator that takes hints (its config's "hints": `hinted`), saved as train.py
    saves it."""
    torch.manual_seed(0)
    cfg = dict(task="colorize", netG="unet", image_size=32, ngf=4, norm="batch", bottleneck=8,
               norm_stats="running", test_dropout="off", hints=hinted)
    utils.save_checkpoint({"G": tasks.generator_for(cfg).state_dict(), "config": cfg}, path)
    return path


@pytest.fixture(scope="module")
def hinted(tmp_path_factory):
    """A G that takes hints as points: a run of train.py --hints points, or of --hints from before
    --hints spread (its config's True)."""
    return save_hinted(tmp_path_factory.mktemp("hinted") / "hinted.pt", True)


@pytest.fixture(scope="module")
def spreading(tmp_path_factory):
    """A G of train.py --hints (spread)."""
    return save_hinted(tmp_path_factory.mktemp("spreading") / "spreading.pt", "spread")


def network_input(checkpoint, src, *flags):
    """The x that generate.py gives G for the input file src (its folder is --input): (C, H, W)."""
    args = generate.get_parser().parse_args(["--checkpoint", str(checkpoint), "--input", str(src.parent),
                                             "--output", str(src.parent.parent / "unused"), *map(str, flags)])
    return colorize.TASK.image_to_input(src, generate.load(args))["x"]


# ----------------------------------------------------------------------------------------------------
# The networks and training


def test_channels_with_and_without_hints():
    """Without --hints G is the paper's to the parameter, also for a configuration from before --hints;
    with them its first layer takes L and the hint map; D judges (L, ab) either way."""
    paper = dict(task="colorize", netG="unet", image_size=256, ngf=64, norm="batch", bottleneck=4000)
    with torch.device("meta"):
        for cfg, in_ch in [(paper, 1), (dict(paper, hints=False), 1), (dict(paper, hints=None), 1),
                           (dict(paper, hints=True), 4), (dict(paper, hints="points"), 4), (dict(paper, hints="spread"), 4)]:
            G = tasks.generator_for(cfg)
            assert G.downs[0][0].in_channels == in_ch
            assert model.num_params(G) == 54_409_858 + 64 * 16 * (in_ch - 1)
        D = tasks.build_discriminator("colorize", "unet", "patch", 256)
    assert D.net[0].in_channels == 3
    x = torch.zeros(2, 4, 32, 32)
    assert colorize.TASK.d_input(x, torch.ones(2, 2, 32, 32), None).shape[1] == 3


def test_sampled_patches_are_reproducible_and_often_none():
    """The same image rng gives the same patches; about 1 image in 8 gets none; patches stay inside the
    image at most largest_patch a side; validation draws exactly VAL_HINTS."""
    train_tf, val_tf = hints.with_patches(*(colorize.ColorizeTransform(32, 36, t) for t in (True, False)))
    img = Image.new("RGB", (40, 36), (120, 80, 40))
    labels = [train_tf(img, np.random.default_rng([0, 0, i]))[1] for i in range(400)]
    again = [train_tf(img, np.random.default_rng([0, 0, i]))[1] for i in range(400)]
    assert all(torch.equal(a, b) for a, b in zip(labels, again))
    counts = np.array([len(torch.unique(t)) - 1 for t in labels])
    assert 0.06 < np.mean([t.max() == 0 for t in labels]) < 0.2
    assert 3 < counts.mean() < 9  # fewer than the drawn 7 on average: patches overlap
    assert hints.largest_patch(32) == 2 and hints.largest_patch(64) == 3 and hints.largest_patch(256) == 9
    for t in labels:
        for k in torch.unique(t)[1:]:
            rows, cols = torch.nonzero(t == k, as_tuple=True)
            assert rows.max() - rows.min() < 2 and cols.max() - cols.min() < 2
    val = val_tf(img, np.random.default_rng([0, 0, 3]))[1]
    assert val.max() == hints.VAL_HINTS and torch.equal(val, val_tf(img, np.random.default_rng([0, 0, 3]))[1])


def test_patch_means_carry_each_patchs_mean_ab():
    ab = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).view(2, 2, 4, 4) / 100
    labels = torch.zeros(2, 4, 4, dtype=torch.int32)
    labels[0, :2, :2], labels[0, 3, 3], labels[1, 1:3, 1:4] = 1, 2, 1
    hint_map = hints.patch_means(ab, labels)
    assert hint_map.shape == (2, 3, 4, 4)
    assert torch.equal(hint_map[:, 2], (labels > 0).float())
    assert torch.allclose(hint_map[0, :2, 0, 0], ab[0, :, :2, :2].mean((1, 2)))
    assert torch.allclose(hint_map[0, :2, 3, 3], ab[0, :, 3, 3])
    assert torch.allclose(hint_map[1, :2, 2, 3], ab[1, :, 1:3, 1:4].mean((1, 2)))
    assert (hint_map[:, :2][(labels == 0)[:, None].expand(-1, 2, -1, -1)] == 0).all()


@pytest.mark.slow
def test_resumed_hinted_run_equals_an_uninterrupted_one_and_scores_with_hints(tmp_path):
    """The hints of each image are the same in a resumed run; validation, the test split and the run's page
    have the hinted columns beside the plain ones; the configuration records --hints and resume keeps it."""
    common = ["--epochs", 2, "--epochs-decay", 1, "--hints", "--ema", 0]
    train.main(tiny_args(tmp_path / "a", *common, "--stop-at", 6))
    train.main(tiny_args(tmp_path / "b", *common, "--stop-at", 3))
    train.main(train.get_parser().parse_args(["--resume", str(tmp_path / "b" / "run" / "last.pt"), "--stop-at", "6"]))
    a, b = (torch.load(tmp_path / r / "run" / "last.pt", weights_only=True) for r in ("a", "b"))
    assert a["step"] == b["step"] == 6 and a["config"]["hints"] == b["config"]["hints"] == "spread"
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"
    assert a["G"]["downs.0.0.weight"].shape[1] == 4 and a["D"]["net.0.weight"].shape[1] == 3
    rows = utils.read_csv(tmp_path / "b" / "run" / "metrics.csv")
    assert {"psnr", "baseline_gray_psnr", "hints10_psnr", "hints10_ciede2000"} <= set(rows[-1])
    assert not any(k.startswith(("hints10_baseline", "hints10_reference")) for k in rows[-1])
    page = (tmp_path / "b" / "run" / "index.html").read_text()
    assert "hints10_psnr" in page and "[input | output | input with 10 hints | output | target]" in page
    grid = Image.open(sorted((tmp_path / "b" / "run" / "samples").glob("*.png"))[-1])
    assert grid.width == 5 * (128 + 2) + 2  # 32 px enlarged to 128, 5 columns: the hinted pair too


def two_rooms(side=32):
    """L (side, side) of two flat regions of L 80 parted by a vertical ink line of L 10 down column side/2,
    with a gap-free wall: the left room, the wall, the right room."""
    L = torch.full((side, side), 80.0)
    L[:, side // 2] = 10.0
    return L


def test_a_hint_spreads_over_its_region_and_stops_at_the_ink():
    """The hint's colour reaches every pixel of its region, with a weight near 1 there and 1 on the hint
    itself; past the ink line the weight is near 0; an image without hints gets none, whatever the others
    in its batch have."""
    L = torch.stack([two_rooms(), two_rooms()])
    sparse = torch.zeros(2, 3, 32, 32)
    sparse[0, :, 5, 3] = torch.tensor([0.4, -0.2, 1.0])
    spread = hints.spread(L, sparse)
    left, right = spread[0, :, :, :16], spread[0, :, :, 17:]
    assert torch.allclose(left[:2], torch.tensor([0.4, -0.2]).view(2, 1, 1).expand(2, 32, 16))
    assert spread[0, 2, 5, 3] == 1 and left[2].min() > np.exp(-1.5) and (left[2] < 1).sum() == 32 * 16 - 1
    assert torch.equal(right, torch.zeros_like(right))  # past the ink: no hint
    assert torch.equal(spread[1], torch.zeros(3, 32, 32))  # the second image has no hint
    # Around a wall: the region is a U, and the colour still goes the long way around, weaker.
    L = torch.full((32, 32), 80.0)
    L[:28, 16] = 10.0
    spread = hints.spread(L[None], sparse[:1])[0]
    assert torch.allclose(spread[:2, 2, 30], torch.tensor([0.4, -0.2])) and np.exp(-6) < spread[2, 2, 30] < spread[2, 2, 10]


def test_hints_modes_and_what_g_sees():
    """train.py --hints is spread, --hints points Zhang et al.'s points; a run from before (True) took
    points; G sees the map spread only for a spread run."""
    parse = train.get_parser().parse_args
    assert parse(["--hints"]).hints == "spread" and parse(["--hints", "points"]).hints == "points"
    assert parse([]).hints is None
    assert [hints.mode(c) for c in ({}, {"hints": False}, {"hints": True}, {"hints": "spread"})] == [None, None, "points", "spread"]
    L, sparse = two_rooms()[None], torch.zeros(1, 3, 32, 32)
    sparse[0, :, 5, 3] = 1
    assert torch.equal(hints.for_network({"hints": True}, L, sparse), sparse)
    assert torch.equal(hints.for_network({"hints": "spread"}, L, sparse), hints.spread(L, sparse))


def test_generate_spreads_the_hint_images_hints(tmp_path, spreading):
    """For a G of --hints spread, generate.py spreads a hint image's dots over their regions at the network's
    resolution: the dot's network pixel has weight 1 and the colour, the rest of its region the colour."""
    page = np.full((64, 64), 200, np.uint8)
    page[:, 31:33] = 0  # an ink line down the middle
    (tmp_path / "in").mkdir()
    Image.fromarray(page, "L").save(tmp_path / "in" / "page.png")
    hint_image(tmp_path / "hints" / "page.png", (64, 64), {(10, 20): RED})
    x = network_input(spreading, tmp_path / "in" / "page.png", "--hints", tmp_path / "hints")
    assert x.shape == (4, 32, 32) and x[3, 10, 5] == 1
    assert np.allclose(x[1:3, :, :15], ab_of(RED)[:, None, None], atol=1e-5) and x[3, :, :15].min() > np.exp(-1.5)
    assert (x[1:, :, 17:] == 0).all()


# ----------------------------------------------------------------------------------------------------
# generate.py --hints


def test_the_network_sees_each_hint_by_area(tmp_path, hinted):
    """A 1-px dot on a 2000x1500 page survives the squash to 32x32 in its network pixel with its colour; a
    hint image of another size is scaled to the page, and each network pixel that a hint pixel of the page
    falls in is a hint, at --aspect squash and keep."""
    write_image(tmp_path / "in" / "page.png", size=(2000, 1500), mode="L")
    hint_image(tmp_path / "hints" / "page.png", (2000, 1500), {(1234, 777): RED})
    x = network_input(hinted, tmp_path / "in" / "page.png", "--hints", tmp_path / "hints")
    assert x.shape == (4, 32, 32) and x[3].sum() == 1 and x[3, 777 * 32 // 1500, 1234 * 32 // 2000] == 1
    assert np.allclose(x[1:3, 777 * 32 // 1500, 1234 * 32 // 2000], ab_of(RED), atol=1e-5)

    # A quarter-size hint image, scaled to the page by nearest: each of its pixels is 4x4 page pixels.
    write_image(tmp_path / "small" / "page.png", size=(200, 100), mode="L")
    quarter = hint_image(tmp_path / "quarter" / "page.png", (50, 25), {(5, 4): BLUE, (40, 20): RED})
    for aspect, (w, h) in [("squash", (32, 32)), ("keep", (64, 32))]:  # keep: 64x32, no padding needed
        x = network_input(hinted, tmp_path / "small" / "page.png", "--hints", tmp_path / "quarter", "--aspect", aspect)
        on_page = np.asarray(Image.open(quarter).resize((200, 100), Image.NEAREST))
        cells = {(r * h // 100, c * w // 200): tuple(on_page[r, c, :3]) for r, c in zip(*np.nonzero(on_page[..., 3]))}
        assert x.shape == (4, h, w) and sorted(map(tuple, torch.nonzero(x[3]).tolist())) == sorted(cells)
        assert all(np.allclose(x[1:3, r, c], ab_of(rgb), atol=1e-5) for (r, c), rgb in cells.items())


@pytest.mark.parametrize("checkpoint", ["hinted", "spreading"])
def test_hints_change_the_colour_and_keep_the_pages_lightness(tmp_path, checkpoint, request):
    """With a hint file the output differs from the one without, which an input without a hint file
    keeps; L is the page's own either way; the comparison and the page's thumbnail show the hints over the
    input. Points and spread alike."""
    hinted = request.getfixturevalue(checkpoint)
    for name in ("hinted", "plain"):
        write_image(tmp_path / "in" / f"{name}.png", size=(120, 90), seed=3)
    hint_image(tmp_path / "hints" / "hinted.png", (120, 90), {(x, y): RED for x in range(30, 60) for y in range(20, 50)})
    assert run_generate(hinted, tmp_path / "in", tmp_path / "with", "--hints", tmp_path / "hints", "--save-comparison") == 0
    assert run_generate(hinted, tmp_path / "in", tmp_path / "without") == 0
    read = {(d, n): np.asarray(Image.open(tmp_path / d / f"{n}.png")) for d in ("with", "without") for n in ("hinted", "plain")}
    assert np.array_equal(read["with", "plain"], read["without", "plain"])
    assert not np.array_equal(read["with", "hinted"], read["without", "hinted"])
    page = np.asarray(Image.open(tmp_path / "in" / "hinted.png").convert("RGB"))
    L = [colorize.rgb_to_lab(torch.tensor(a).permute(2, 0, 1)[None] / 255)[0, 0] for a in (page, read["with", "hinted"])]
    assert (L[0] - L[1]).abs().median() < 1.0
    comparison = np.asarray(Image.open(tmp_path / "with" / "hinted.comparison.png"))
    assert tuple(comparison[30, 40]) == RED and np.array_equal(comparison[70, :120], page[70])
    thumbnail = np.asarray(Image.open(pages.thumbnail_path(tmp_path / "with", "hinted.png", "input")), int)
    assert np.abs(thumbnail[35, 45] - RED).max() < 30  # the page's input thumbnail shows them too


def test_a_changed_hint_file_redoes_its_output_alone(tmp_path, hinted, capsys):
    for name in ("a", "b"):
        write_image(tmp_path / "in" / f"{name}.png", size=(64, 48), seed=1)
    hint_image(tmp_path / "hints" / "a.png", (64, 48), {(10, 10): RED})
    flags = ("--hints", tmp_path / "hints")
    assert run_generate(hinted, tmp_path / "in", tmp_path / "out", *flags) == 0
    assert "2 to do, 1 with hints" in capsys.readouterr().out
    hint_image(tmp_path / "hints" / "a.png", (64, 48), {(10, 10): BLUE})
    assert run_generate(hinted, tmp_path / "in", tmp_path / "out", *flags) == 0
    assert "1 already done, 1 to do, 1 with hints" in capsys.readouterr().out
    assert run_generate(hinted, tmp_path / "in", tmp_path / "out", *flags) == 0
    assert "2 already done, 0 to do" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["text", "no alpha"])
def test_a_bad_hint_file_is_reported_once_and_its_input_generated(tmp_path, hinted, capsys, bad):
    write_image(tmp_path / "in" / "page.png", size=(64, 48))
    write_image(tmp_path / "in" / "other.png", size=(64, 48), seed=2)
    path = tmp_path / "hints" / "page.png"
    if bad == "text":
        path.parent.mkdir()
        path.write_text("not an image")
    else:
        write_image(path, size=(64, 48))
    assert run_generate(hinted, tmp_path / "in", tmp_path / "out", "--hints", tmp_path / "hints") == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "generated without hints" in line]
    assert len(said) == 1 and str(path) in said[0]
    assert "cannot be read" in out if bad == "text" else "no alpha channel" in out
    assert (tmp_path / "out" / "page.png").is_file() and (tmp_path / "out" / "other.png").is_file()


def test_a_checkpoint_without_hints_refuses_them(tmp_path, untrained, capsys):
    write_image(tmp_path / "in" / "page.png")
    (tmp_path / "hints").mkdir()
    with pytest.raises(SystemExit) as e:
        run_generate(untrained["colorize"], tmp_path / "in", tmp_path / "out", "--hints", tmp_path / "hints")
    assert str(e.value).startswith("error: --hints:") and "without --hints" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_generate_refuses_another_tasks_flags(tmp_path, untrained):
    """--hints for an inpaint checkpoint, --mask for a colorizer: one line, nothing written."""
    write_image(tmp_path / "in" / "page.png")
    (tmp_path / "hints").mkdir()
    for task, flags, said in [("inpaint", ["--hints", tmp_path / "hints"], "--hints is for --task colorize"),
                              ("colorize", ["--mask", "center"], "--mask is for --task inpaint")]:
        with pytest.raises(SystemExit) as e:
            run_generate(untrained[task], tmp_path / "in", tmp_path / "out", *flags)
        assert str(e.value) == f"error: {said}, and the checkpoint is --task {task}"
    assert not (tmp_path / "out").exists()
