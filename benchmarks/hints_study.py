"""Colour hints, measured: does a colorizer trained with train.py --hints take the colours it is given,
and what does training with hints cost when none are given? (docs/hints.md)

    python benchmarks/hints_study.py --synthetic        # drawings whose hues the gray cannot tell: 1,500 steps
    python benchmarks/hints_study.py --real             # real drawings: spread, points, no hints: 3,000 steps each
    python benchmarks/hints_study.py --synthetic --real --steps 4 --train-images 24 --test-images 3 --out /tmp/hints --picture /tmp/hints.png

--synthetic draws its own set (synthetic_drawing: flat regions of a random hue each, outlined in black ink,
so that the gray says where a region is and never which colour it has), trains `train.py --hints spread`
and `--hints points` on it at 64 px, and runs `generate.py` on held-out drawings without hints and with
DOTS hint dots (a small disc of the true colour at a random point inside a region, painted into a hint
image as a person would). It prints PSNR and CIEDE2000 for both, the mean ab error at the dots, and how far
the output's L is from the page's. The bar: at least 2 dB more PSNR with the dots, an ab error of at most
12 at the dots, L kept.

--real uses the held-out set of real drawings (common.prepare: Debian's tuxpaint stamps, shared with
benchmarks/real_drawings.py), trains --hints spread, --hints points and no --hints for the same steps,
and prints PSNR and CIEDE2000 on its test split for 0, 1, 5, 10 and 20 hint patches drawn from each target
(their mean colour, as validation draws its 10), the model without hints beside them; and writes
--picture (docs/hints.png): one test drawing colorized by the --hints spread model with no hints and with
a few dots.
"""
import argparse
import colorsys
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import common
from common import REPO, log, table

import classes  # noqa: E402  (the repo's modules, on the path that common sets)
import colorize  # noqa: E402
import data  # noqa: E402
import hints  # noqa: E402
import model  # noqa: E402
import tasks  # noqa: E402

# Training: the demo's network size at 64 px (as benchmarks/real_drawings.py trains), the lr decaying to
# 0 over the second half of --steps.
TRAIN = ["--image-size", "64", "--load-size", "72", "--ngf", "32", "--ndf", "32", "--batch-size", "4",
         "--epochs", "1", "--epochs-decay", "1", "--val-images", "64"]
SYNTHETIC_STEPS, REAL_STEPS = 1500, 3000
TRAIN_SIDE, TEST_SIDE = 72, 128  # px: training drawings at the load size; held-out ones larger, as pages are
VAL_IMAGES = 64
SHAPES = (3, 7)  # regions a drawing has besides its background, at least and below
INK = (15, 15, 18)
INK_FRAC = 1 / 50  # outline width as a share of the side
DOTS, DOT_RADIUS_FRAC = 12, 1 / 64  # hint dots per held-out drawing, and their radius as a share of its side
HINT_COUNTS = (0, 1, 5, 10, 20)  # --real: hint patches drawn from each target
PICTURE_DOTS, PICTURE_SCALE = 5, 3  # --picture: dots on the drawing, and its enlargement


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synthetic", action="store_true", help="train and judge on drawings whose hues the gray cannot tell")
    p.add_argument("--real", action="store_true", help="train with and without --hints on the real drawings")
    p.add_argument("--steps", type=int, help=f"training steps of each run (default: {SYNTHETIC_STEPS} synthetic, "
                   f"{REAL_STEPS} real)")
    p.add_argument("--train-images", type=int, default=2000, help="synthetic training drawings")
    p.add_argument("--test-images", type=int, default=50, help="held-out synthetic drawings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--side", type=int, default=80, help="shorter side of the prepared real drawings, px")
    p.add_argument("--real-data", type=Path, default=REPO / "runs" / "real" / "data", help="where the real set is "
                   "prepared (benchmarks/real_drawings.py's, by default)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "hints")
    p.add_argument("--picture", type=Path, default=REPO / "docs" / "hints.png", help="--real's picture")
    return p


def train(flags, steps, out):
    """A finished run's last.pt, trained here unless it is already there."""
    if not (out / "test_scores.json").exists():
        command = [sys.executable, "train.py", *TRAIN, "--steps", str(steps), "--val-every", str(max(1, steps // 2)),
                   *flags, "--out", str(out)]
        log("$ " + " ".join(command[1:]))
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return out / "last.pt"


def lab(rgb):
    """(H, W, 3) uint8 -> (3, H, W) Lab."""
    return colorize.rgb_to_lab(torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255)[0]


def gray_of(img):
    """A colour image's own L as a gray PIL image (ab = 0), as the colorizer sees it."""
    L = lab(np.asarray(img.convert("RGB")))[:1]
    gray = colorize.lab_to_rgb(torch.cat([L, torch.zeros(2, *L.shape[1:])])[None])[0, 0]
    return Image.fromarray((gray * 255 + 0.5).to(torch.uint8).numpy(), "L")


# ----------------------------------------------------------------------------------------------------
# Synthetic drawings: the hue of each region is random, so only a hint can tell it


def random_colour(rng):
    hue, saturation, value = rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.45, 0.95)
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def synthetic_drawing(seed, side):
    """A background and a few ellipses and polygons, each of a random colour, outlined in ink -> (PIL RGB
    image, (side, side) region labels: 0 on the ink, 1 the background, 2 and on the shapes)."""
    rng = np.random.default_rng(seed)
    img, labels = Image.new("RGB", (side, side), random_colour(rng)), Image.new("L", (side, side), 1)
    width = max(1, round(side * INK_FRAC))
    for k in range(int(rng.integers(*SHAPES))):
        fill = random_colour(rng)
        center, radius = rng.uniform(0.15, 0.85, 2) * side, rng.uniform(0.1, 0.3) * side
        if rng.random() < 0.5:
            rx, ry = radius * rng.uniform(0.6, 1.4, 2)
            shape, xy = "ellipse", [center[0] - rx, center[1] - ry, center[0] + rx, center[1] + ry]
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            shape, xy = "polygon", [tuple(center + radius * np.array([np.cos(a), np.sin(a)])) for a in angles]
        for canvas, colour, ink in ((img, fill, INK), (labels, k + 2, 0)):
            getattr(ImageDraw.Draw(canvas), shape)(xy, fill=colour, outline=ink, width=width)
    return img, np.asarray(labels)


def dots_in_regions(labels, count, radius, rng):
    """`count` disc centres (x, y) whose disc of `radius` lies inside one region, the regions taken in turn
    in a random order, each point at random in its region."""
    k = 2 * radius + 1
    padded = np.pad(labels, radius, constant_values=0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k))  # (H, W, k, k)
    inside = (windows == labels[:, :, None, None]).all(axis=(2, 3)) & (labels > 0)
    regions = [r for r in rng.permutation(np.unique(labels[inside]))]
    points = []
    for i in range(count):
        ys, xs = np.nonzero(inside & (labels == regions[i % len(regions)]))
        j = int(rng.integers(len(ys)))
        points.append((int(xs[j]), int(ys[j])))
    return points


def make_synthetic_set(root, args):
    """root/data/{train,val,test} (colour PNGs: generate.py takes only their L), root/hints (the test
    drawings' hint images, DOTS dots each) -> the dots' pixels {test name: (H, W) bool}."""
    rng = np.random.default_rng(args.seed)
    splits = {"train": (args.train_images, TRAIN_SIDE, 0), "val": (VAL_IMAGES, TRAIN_SIDE, 10**6),
              "test": (args.test_images, TEST_SIDE, 2 * 10**6)}
    dots = {}
    for split, (count, side, first) in splits.items():
        (root / "data" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = f"{i:05d}.png"
            img, labels = synthetic_drawing(first + i, side)
            if not (root / "data" / split / name).exists():
                img.save(root / "data" / split / name)
            if split != "test":
                continue
            radius = max(1, round(side * DOT_RADIUS_FRAC))
            painted = Image.new("RGBA", img.size, (0, 0, 0, 0))
            for x, y in dots_in_regions(labels, DOTS, radius, rng):
                ImageDraw.Draw(painted).ellipse((x - radius, y - radius, x + radius, y + radius), fill=(*img.getpixel((x, y)), 255))
            (root / "hints").mkdir(exist_ok=True)
            painted.save(root / "hints" / name)
            dots[name] = np.asarray(painted)[..., 3] >= hints.HINT_ALPHA
    return dots


def synthetic(args):
    root = args.out / "synthetic"
    dots = make_synthetic_set(root, args)
    rows, gains = [], {}
    for mode in hints.MODES:
        checkpoint = train(["--data", str(root / "data"), "--hints", mode, "--seed", str(args.seed)],
                           args.steps or SYNTHETIC_STEPS, root / f"run-{mode}")
        means = {}
        for label, flags in (("no hints", []), (f"{DOTS} dots", ["--hints", root / "hints"])):
            out = root / "generated" / mode / label.replace(" ", "-")
            common.generate_quietly(["--checkpoint", checkpoint, "--input", root / "data" / "test", "--output", out,
                                     "--reference", root / "data" / "test", "--overwrite", *flags])
            ab_errors, L_errors = [], []
            for name, at_dots in dots.items():
                true, made = (lab(np.asarray(Image.open(f).convert("RGB"))) for f in (root / "data" / "test" / name, out / name))
                ab_errors.append(float((true[1:] - made[1:]).norm(dim=0)[torch.from_numpy(at_dots)].mean()))
                L_errors.append((true[0] - made[0]).abs())
            L_errors = torch.cat([e.flatten() for e in L_errors])
            means[label] = json.loads((out / "scores.json").read_text())["mean"]
            rows.append([f"--hints {mode}", label, f"{means[label]['psnr']:.2f}", f"{means[label]['ciede2000']:.2f}",
                         f"{np.mean(ab_errors):.1f}", f"{L_errors.median():.2f} / {L_errors.max():.1f}"])
        gains[mode] = means[f"{DOTS} dots"]["psnr"] - means["no hints"]["psnr"]
    print(f"\n### Synthetic drawings ({args.test_images} held out at {TEST_SIDE} px, {args.steps or SYNTHETIC_STEPS} "
          f"steps at 64 px)\n")
    print(table(["trained with", "hints", "PSNR", "CIEDE2000", "ab error at the dots", "L's change: median / max"],
                rows, "llrrrr"))
    print("\nPSNR gain with {} dots: {} (the bar: +2.00 dB)\n".format(
        DOTS, ", ".join(f"{gain:+.2f} dB with --hints {mode}" for mode, gain in gains.items())))


# ----------------------------------------------------------------------------------------------------
# Real drawings: hints drawn from the target, as validation draws them


@torch.no_grad()
def hinted_scores(G, cfg, files, count):
    """Mean PSNR and CIEDE2000 of G on `files` (centre squares at its size, as validation crops them) with
    `count` hint patches drawn from each target (none for a G without hints)."""
    task, transform = tasks.TASKS[cfg.task], colorize.ColorizeTransform(cfg.image_size, cfg.load_size, False)
    if hints.used(cfg):
        transform = hints.WithPatches(transform, count)
    sums, n = {"psnr": 0.0, "ciede2000": 0.0}, 0
    for batch in data.scoring_loader(classes.ImageDataset(files, transform, replace=False), 16):
        xy = task.batch_to_xy(batch, cfg, torch.device("cpu"))
        with model.test_time(G, cfg.norm_stats):
            scores = task.scores(*task.pictures(xy, G(xy.x).float(), cfg))
        sums = {k: v + scores[k].sum().item() for k, v in sums.items()}
        n += len(xy.x)
    return {k: v / n for k, v in sums.items()}


def loaded(checkpoint):
    G, cfg = tasks.load_generator(checkpoint)
    return G, argparse.Namespace(**cfg)


def picture(checkpoint, test_dir, path, work, rng):
    """One test drawing, the one with the most colour: [gray | no hints | the dots over the gray | with
    them | the original], enlarged PICTURE_SCALE times."""
    name = max(sorted(test_dir.glob("*.png")), key=lambda f: float(lab(np.asarray(Image.open(f)))[1:].norm(dim=0).mean()))
    original = Image.open(name).convert("RGB")
    (work / "in").mkdir(parents=True, exist_ok=True)
    gray_of(original).save(work / "in" / "drawing.png")
    radius = max(1, round(min(original.size) * DOT_RADIUS_FRAC * 2))
    labels = np.asarray(original.quantize(16, kmeans=1)) + 1  # areas of one colour: the regions to hint, but
    labels[(np.asarray(original) >= common.WHITE).all(axis=2)] = 0  # never the page
    painted = Image.new("RGBA", original.size, (0, 0, 0, 0))
    for x, y in dots_in_regions(labels, PICTURE_DOTS, radius, rng):
        ImageDraw.Draw(painted).ellipse((x - radius, y - radius, x + radius, y + radius), fill=(*original.getpixel((x, y)), 255))
    (work / "hints").mkdir(exist_ok=True)
    painted.save(work / "hints" / "drawing.png")
    panels = [gray_of(original).convert("RGB")]
    for flags in ([], ["--hints", work / "hints"]):
        out = work / ("with" if flags else "without")
        common.generate_quietly(["--checkpoint", checkpoint, "--input", work / "in", "--output", out, "--overwrite",
                                 "--save-comparison", *flags])
        comparison = Image.open(out / "drawing.comparison.png")
        panels += [comparison.crop((0, 0, original.width, original.height))] if flags else []
        panels.append(Image.open(out / "drawing.png"))
    panels.append(original)
    sheet = Image.new("RGB", (len(panels) * original.width + (len(panels) - 1) * 4, original.height), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * (original.width + 4), 0))
    sheet.resize((sheet.width * PICTURE_SCALE, sheet.height * PICTURE_SCALE), Image.NEAREST).save(path)
    log(f"{path}: [gray | no hints | {PICTURE_DOTS} dots | with them | original] of {name.name}")


def real(args):
    counts = common.prepare(args.real_data, args.side)
    steps, data_dir = args.steps or REAL_STEPS, args.real_data / "set"
    plans = {**{f"--hints {mode}": ["--hints", mode] for mode in hints.MODES}, "no --hints": []}
    runs = {label: train(["--data", str(data_dir), "--seed", str(args.seed), *flags], steps, args.out / "real" /
                         f"{(flags or ['', 'plain'])[1]}-s{args.seed}") for label, flags in plans.items()}
    files = sorted((data_dir / "test").glob("*.png"))
    models = {label: loaded(checkpoint) for label, checkpoint in runs.items()}
    rows = []
    for count in HINT_COUNTS:
        row = [str(count)]
        for label, (G, cfg) in models.items():
            means = hinted_scores(G, cfg, files, count) if hints.used(cfg) or count == 0 else None
            row += [f"{means['psnr']:.2f}", f"{means['ciede2000']:.2f}"] if means else ["", ""]
        rows.append(row)
    print(f"\n### Real drawings ({len(files)} test drawings of {counts.get('test')}; {steps} steps at 64 px, seed "
          f"{args.seed}): PSNR / CIEDE2000\n")
    print(table(["hints drawn from the target", *(f"{k}, {label}" for label in runs for k in ("PSNR", "CIEDE2000"))],
                rows, "r" * (1 + 2 * len(runs))))
    picture(runs[f"--hints {hints.MODES[0]}"], data_dir / "test", args.picture, args.out / "real" / "picture",
            np.random.default_rng(args.seed))


def main(args):
    if not (args.synthetic or args.real):
        raise SystemExit("error: say --synthetic, --real or both")
    if args.synthetic:
        synthetic(args)
    if args.real:
        real(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
