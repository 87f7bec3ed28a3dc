"""Does the colorizer do better seeing a panel squashed to a square (generate.py --aspect squash, the default)
or at its own aspect, padded (--aspect keep)? Held-out demo panels cut to wide and tall shapes, colorized
both ways with --reference, scored against their true colours.

    python train.py                                                       # the demo model, runs/colorize-demo
    python benchmarks/aspect_study.py --checkpoint runs/colorize-demo/best.pt

Panels: demo.draw_panel at seeds from demo.DEMO_TEST_ID on (never drawn in training) at --side pixels,
each cut to every shape of SHAPES around its center. Prints a markdown table of the mean PSNR per shape.
"""
import argparse
import json
import tempfile
from pathlib import Path

from common import generate_quietly, log  # first: it puts the repo's modules on the path
import demo
import utils

SHAPES = [(1, 1), (4, 3), (2, 1), (8, 3), (3, 4), (1, 2), (3, 8)]  # width : height


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/colorize-demo/best.pt", help="a colorize run's checkpoint")
    p.add_argument("--side", type=int, default=256, help="the longer side of each cut panel")
    p.add_argument("--panels", type=int, default=10, help="panels per shape")
    return p


def cut(panel, shape):
    """The centered part of a square panel with the given width : height."""
    w, h = shape
    side = panel.width
    width, height = (side, round(side * h / w)) if w >= h else (round(side * w / h), side)
    left, top = (side - width) // 2, (side - height) // 2
    return panel.crop((left, top, left + width, top + height))


def main(args):
    lines = ["| panel shape (w x h) | --aspect squash | --aspect keep |", "|---|--:|--:|"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for shape in SHAPES:
            for i in range(args.panels):
                panel = cut(demo.draw_panel(demo.DEMO_TEST_ID + i, args.side), shape)
                name = f"{shape[0]}x{shape[1]}/{i}.png"
                for sub, image in (("gray", panel.convert("L")), ("colour", panel)):
                    (root / sub / name).parent.mkdir(parents=True, exist_ok=True)
                    image.save(root / sub / name)
        psnr = {}
        for aspect in ("squash", "keep"):
            log(f"--aspect {aspect} ...")
            out = root / aspect
            generate_quietly(["--checkpoint", args.checkpoint, "--input", root / "gray", "--output", out,
                              "--reference", root / "colour", "--aspect", aspect])
            rows = utils.read_csv(out / "scores.csv")
            psnr[aspect] = {r["image"]: float(r["psnr"]) for r in rows}
            psnr[aspect]["all"] = json.loads((out / "scores.json").read_text())["mean"]["psnr"]
        for shape in SHAPES:
            key = f"{shape[0]}x{shape[1]}/"
            size = cut(demo.draw_panel(0, args.side), shape).size
            means = [sum(v for k, v in psnr[a].items() if k.startswith(key)) / args.panels for a in ("squash", "keep")]
            lines.append(f"| {size[0]}x{size[1]} | {means[0]:.2f} | {means[1]:.2f} |")
        lines.append(f"| all {len(SHAPES) * args.panels} | {psnr['squash']['all']:.2f} | {psnr['keep']['all']:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(get_parser().parse_args())
