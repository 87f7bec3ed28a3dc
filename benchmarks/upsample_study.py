"""How the predicted colour is brought to the page's size (generate.py --ab-upsample): each method on
held-out demo panels drawn larger than the network, scored against their true colours, a picture of
crops side by side, and the time of each on 1200x1700 panels.

    python train.py --out runs/colorize-demo-study                                    # the demo model, ~13 min
    python benchmarks/upsample_study.py --checkpoint runs/colorize-demo-study/best.pt  # ~3.5 min, 2 cores

Panels: demo.draw_panel at seeds from demo.DEMO_TEST_ID on (the test split, which training never draws),
at each --sizes, saved as gray inputs and colour references; generate.py runs on them once per method
with --reference, and OUTPUT/scores.json gives the means (PSNR, SSIM, CIEDE2000, colourfulness). The
picture (--picture) shows the crops of one panel where the methods' outputs differ most (CIE76): the
gray input, each method, the reference, enlarged with nearest-neighbour so that the pixels show.

Timing: generate.py end to end with its defaults on --time-panels 1200x1700 drawings, with an untrained
generator of the paper's size (the time does not depend on the weights), the methods alternating run by
run; and finish_image alone (upsampling, Lab to sRGB), alternating call by call in this process.
Medians; the load average is printed, since other work on the machine shows up in every figure.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image, ImageDraw

import common  # first: it puts the repo's modules on the path
from common import generate_quietly, log, table
import colorize
import demo
import generate
import images
import tasks

METHODS = ("bilinear", "joint-bilateral")  # generate.py --ab-upsample; the second is its default
METRICS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ciede2000": "CIEDE2000", "colourfulness": "colourfulness"}
PAGE_SIZE = (1200, 1700)  # a scanned comic panel (bench.py's generate size)
CROP, ZOOM, CROPS = 48, 4, 3  # picture: CROPS crops of CROP pixels, each pixel shown ZOOM x ZOOM
LABEL_HEIGHT = 14  # a line of PIL's default bitmap font
FINISH_CALLS = 9  # timed calls of finish_image per method


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/colorize-demo-study/best.pt", help="a colorize run's checkpoint")
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024], help="sides of the drawn panels")
    p.add_argument("--panels", type=int, default=12, help="panels per size")
    p.add_argument("--out", help="folder for panels and outputs (default: a temporary folder, removed)")
    p.add_argument("--picture", default="docs/colour_crop.png", help="crops side by side ('' for none)")
    p.add_argument("--picture-size", type=int, default=512, help="the panel size the crops come from")
    p.add_argument("--time-panels", type=int, default=8, help="1200x1700 drawings timed end to end (0: no timing)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each method")
    return p


def draw_panels(folder, size, count):
    """Held-out panels at `size`: gray inputs in folder/gray, colour references in folder/colour."""
    for sub in ("gray", "colour"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        panel = demo.draw_panel(demo.DEMO_TEST_ID + i, size)
        panel.save(folder / "colour" / f"{i}.png")
        panel.convert("L").save(folder / "gray" / f"{i}.png")


def score_methods(checkpoint, root, sizes, count):
    """{(size, method): mean scores} from generate.py --reference on each size's panels."""
    means = {}
    for size in sizes:
        folder = root / f"panels-{size}"
        draw_panels(folder, size, count)
        for method in METHODS:
            out = root / f"out-{size}-{method}"
            log(f"{size}-px panels, {method} ...")
            generate_quietly(["--checkpoint", checkpoint, "--input", folder / "gray", "--output", out,
                              "--reference", folder / "colour", "--ab-upsample", method, "--overwrite"])
            means[size, method] = json.loads((out / "scores.json").read_text())["mean"]
    return means


def scores_table(means, network_size):
    rows = []
    for (size, method), m in means.items():
        cells = [f"{m[k]:.4f}" if k == "ssim" else f"{m[k]:.2f}" for k in [*METRICS, "reference_colourfulness"]]
        rows.append([f"{size} px ({size / network_size:g}x)", method, *cells])
    return table(["panels (upsampling)", "--ab-upsample", *METRICS.values(), "reference colourfulness"],
                       rows, "llrrrrr")


def colour_error(a, b):
    """CIE76 colour difference per pixel of two (H, W, 3) uint8 images -> (H, W)."""
    lab_a, lab_b = (colorize.rgb_to_lab(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255)[0] for x in (a, b))
    return (lab_a - lab_b).norm(dim=0).numpy()


def largest_crops(error, count):
    """The top-left corners of the `count` squares of a CROP grid with the largest mean error."""
    h, w = error.shape[0] // CROP, error.shape[1] // CROP
    cells = error[:h * CROP, :w * CROP].reshape(h, CROP, w, CROP).mean((1, 3))
    order = np.argsort(cells, axis=None)[::-1][:count]
    return [(int(i // w) * CROP, int(i % w) * CROP) for i in order]


def picture(root, size, path):
    """Crops of the first panel where the methods differ most: [gray | each method | reference] per row,
    enlarged."""
    folder = root / f"panels-{size}"
    colour = {"gray": np.array(Image.open(folder / "gray" / "0.png").convert("RGB")),
              **{m: np.array(Image.open(root / f"out-{size}-{m}" / "0.png")) for m in METHODS},
              "reference": np.array(Image.open(folder / "colour" / "0.png"))}
    corners = largest_crops(colour_error(*(colour[m] for m in METHODS)), CROPS)
    side = CROP * ZOOM
    sheet = Image.new("RGB", (len(colour) * (side + ZOOM) - ZOOM, LABEL_HEIGHT + len(corners) * (side + ZOOM)), "white")
    draw = ImageDraw.Draw(sheet)
    for col, (name, rgb) in enumerate(colour.items()):
        draw.text((col * (side + ZOOM), 0), name, fill="black")
        for row, (top, left) in enumerate(corners):
            crop = Image.fromarray(rgb[top:top + CROP, left:left + CROP]).resize((side, side), Image.NEAREST)
            sheet.paste(crop, (col * (side + ZOOM), LABEL_HEIGHT + row * (side + ZOOM)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def time_generate(pages, checkpoint, count, repeats):
    """Seconds per PAGE_SIZE panel of generate.py end to end, {method: [each run]}, the methods alternating."""
    seconds = {m: [] for m in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            log(f"generate.py on {count} {PAGE_SIZE[0]}x{PAGE_SIZE[1]} panels, {method} ...")
            t0 = time.perf_counter()
            generate_quietly(["--checkpoint", checkpoint, "--input", pages, "--ab-upsample", method,
                              "--output", pages.parent / f"out-pages-{method}", "--overwrite"])
            seconds[method].append((time.perf_counter() - t0) / count)
    return seconds


def time_finish(page_file, G, cfg, calls):
    """Seconds of colorize's finish_image alone on one PAGE_SIZE panel at the paper's network size,
    {method: [each call]}, the methods alternating call by call, on one thread (as each worker runs)."""
    run = SimpleNamespace(size=cfg.image_size, aspect=generate.get_parser().get_default("aspect"), max_pixels=None, G=G,
                          cfg=cfg)
    item = colorize.TASK.image_to_input(page_file, run)
    page = images.read_page(page_file, None)
    fake = torch.zeros(2, *item["x"].shape[1:]).uniform_(-0.5, 0.5)  # G's output: the time does not depend on it
    seconds = {m: [] for m in METHODS}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for _ in range(calls):
        for method in METHODS:
            t0 = time.perf_counter()
            for _ in colorize.TASK.finish_image(item, fake, page, SimpleNamespace(ab_upsample=method)):
                pass
            seconds[method].append(time.perf_counter() - t0)
    torch.set_num_threads(threads)
    return seconds


def timing_table(end_to_end, finish):
    rows = []
    for method in METHODS:
        e2e, alone = statistics.median(end_to_end[method]), statistics.median(finish[method])
        rows.append([method, f"{e2e:.3f}", f"{e2e / statistics.median(end_to_end[METHODS[0]]):.3f}",
                     f"{alone * 1000:.0f}", f"{alone / statistics.median(finish[METHODS[0]]):.2f}"])
    headers = ["--ab-upsample", f"s per {PAGE_SIZE[0]}x{PAGE_SIZE[1]} panel (generate.py)", "x bilinear",
               "ms finish_image alone", "x bilinear"]
    return table(headers, rows, "lrrrr")


def main(args):
    print(f"{common.describe_device(torch.device('cpu'))} | torch {torch.__version__} | load average "
          f"{os.getloadavg()[0]:.2f} | python {' '.join(sys.argv)}\n", flush=True)
    network_size = tasks.load_generator(args.checkpoint)[1]["image_size"]
    with contextlib.ExitStack() as stack:
        root = Path(args.out or stack.enter_context(tempfile.TemporaryDirectory(prefix="upsample-")))
        means = score_methods(args.checkpoint, root, args.sizes, args.panels)
        print(f"{args.panels} held-out demo panels per size, network {network_size} px:\n")
        print(scores_table(means, network_size) + "\n", flush=True)
        if args.picture and args.picture_size in args.sizes:
            picture(root, args.picture_size, args.picture)
            print(f"crops -> {args.picture}\n")
        if args.time_panels:
            pages = common.fabricate(root / "pages", [PAGE_SIZE] * args.time_panels, demo.draw_panel, 2000)
            G, cfg, checkpoint = common.paper_generator(colorize.TASK.name, root)
            end_to_end = time_generate(pages[0].parent, checkpoint, args.time_panels, args.repeats)
            finish = time_finish(pages[0], G, cfg, FINISH_CALLS)
            print(timing_table(end_to_end, finish))
            print(f"\nload average {os.getloadavg()[0]:.2f} after timing")
    return means


if __name__ == "__main__":
    main(get_parser().parse_args())
