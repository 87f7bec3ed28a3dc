"""Judge the defaults on real drawings: a held-out set made from Debian's tuxpaint-stamps-default (about
800 PNG stamps, clip-art cartoons and photos under the GPL), trained and generated with the repo's own
commands, one variant at a time, at the same step budget with the lr decaying to 0 inside it.

    python benchmarks/real_drawings.py                                  # both tasks, every variant, seeds 0 1
    python benchmarks/real_drawings.py --tasks colorize --steps 1500 --seeds 0
    python benchmarks/real_drawings.py --prepare-only --out runs/real   # just the data tree
    python benchmarks/real_drawings.py --report                         # the tables of the runs so far

The stamps are installed with apt when missing (as root; they are no dependency of the repo), cropped to
what they draw, put on white, and split by file name (a hash, so adding stamps moves no other file):
15% test, 10% validation, the rest training, at a shorter side of --side px. Colorization keeps the
stamps that have colour (their mean chroma over the drawn pixels is at least common.MIN_CHROMA);
inpainting uses the same files, and is tested on the center squares of the test split with a white
square of half their side at the center, the same mask for every model (common.prepare_holes).

Each training variant is `python train.py --data DIR/set --steps N ...` (runs/real/runs/<task>-<variant>-s<seed>;
a finished run is read again, not retrained), then `python generate.py` on the test split against its
own originals (--reference), once per generate.py variant. Variants of one trained checkpoint (G instead
of its average, the upsampling, the aspect, the test-time protocol) come from the same run. Prints one
markdown table per task: a row per variant, a column per seed and their mean; inpainting also scores the
fills that need no network: white, the ring's mean colour, and OpenCV's Telea (pip install
opencv-python-headless; benchmark only, left out when missing).
"""
import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import REPO, prepare  # first: it puts the repo's modules on the path

import colorize  # noqa: E402  (the repo's modules, on the path that common sets)
import inpaint  # noqa: E402

# What each task's study trains and generates, under its task's name (tasks.TASKS):
# - train: the demo's network size at 64 px, so that a variant trains in minutes on a CPU; the lr decays
#   to 0 over the second half of the steps in both (the Context Encoder's paper keeps it constant: here
#   the budget is short and every variant gets the same schedule);
# - steps: the budget of every variant unless --steps says otherwise;
# - explicit: the settings of the "baseline" run, which every other variant changes in one thing, written
#   out so that the table keeps its meaning when a default changes;
# - trained: training variants, train.py flags beside those, each trained once per seed;
# - generated: generate.py variants of the "baseline" training: (label, flags, G rather than its average).
#   The average changes no step of training (it draws no random number), so G itself is the run
#   without --ema, and G at the paper's test time is the --paper run;
# - inputs, reference: what generate.py is given, and the originals it is scored against (common.prepare's
#   folders);
# - scores: the columns of the table; fills: scores of fills that need no network, beside generate.py's;
# - generate: generate.py flags of every run (a file name in it is one of common.prepare's).
STUDY = {
    colorize.TASK.name: dict(
        train=["--image-size", "64", "--load-size", "72", "--ngf", "32", "--ndf", "32", "--batch-size", "4",
               "--epochs", "1", "--epochs-decay", "1", "--val-images", "64"],
        steps=1500, explicit=["--ema", "0.999", "--test-dropout", "off", "--precision", "auto"],
        trained={"baseline": [], "fp32": ["--precision", "fp32"], "ema-0.99": ["--ema", "0.99"]},
        generated=[("G, not its average (--ema 0)", [], True),
                   ("--ab-upsample bilinear", ["--ab-upsample", "bilinear"], False),
                   ("--aspect keep", ["--aspect", "keep"], False),
                   ("--norm-stats image", ["--norm-stats", "image"], False),
                   ("--test-dropout on", ["--test-dropout", "on"], False),
                   ("--paper: G, image statistics, dropout on", ["--norm-stats", "image", "--test-dropout", "on"], True)],
        inputs="set/test", reference="set/test", scores=["psnr", "ciede2000", "colourfulness"], fills=[],
        generate=[]),
    inpaint.TASK.name: dict(
        train=["--image-size", "64", "--load-size", "64", "--ngf", "32", "--ndf", "32", "--bottleneck", "1000",
               "--batch-size", "8", "--epochs", "1", "--epochs-decay", "1", "--val-images", "64"],
        steps=1000, explicit=["--overlap", "0", "--rec-loss", "l2", "--lr-g-mult", "10", "--precision", "auto"],
        trained={"baseline": [], "lr-g-1x": ["--lr-g-mult", "1"], "overlap-4 (paper)": ["--overlap", "4"],
                 "l1": ["--rec-loss", "l1"], "fp32": ["--precision", "fp32"]},
        generated=[], inputs="holes", reference="holes_truth", scores=["hole_psnr", "psnr", "ssim"],
        fills=["telea"], generate=["--mask", "hole_mask.png"]),
}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=list(STUDY), default=list(STUDY))
    p.add_argument("--steps", type=int, help="training steps of every variant (default: "
                   + ", ".join(f"{task} {study['steps']}" for task, study in STUDY.items()) + ")")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--variants", nargs="+", help="only these training variants (default: all)")
    p.add_argument("--side", type=int, default=80, help="shorter side of the prepared images, px")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "real")
    p.add_argument("--prepare-only", action="store_true", help="write the data tree and stop")
    p.add_argument("--report", action="store_true", help="print the tables of the finished runs, train nothing")
    return p


# ----------------------------------------------------------------------------------------------------
# Training and generating


def run(command):
    print("$ " + " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def train(task, flags, seed, steps, data, out):
    """A finished run's last.pt, trained here unless it is already there."""
    if not (out / "test_scores.json").exists():
        start = ["--resume", str(out / "last.pt")] if (out / "last.pt").exists() else [
            "--task", task, "--data", str(data), "--steps", str(steps), "--val-every", str(steps // 2),
            "--seed", str(seed), *STUDY[task]["train"], *STUDY[task]["explicit"], *flags, "--out", str(out)]
        run(["train.py", *start])
    return out / "last.pt"


def without_average(checkpoint):
    """A copy of the checkpoint whose generator is G itself, not its average (generate.py reads G_ema
    when there is one)."""
    plain = checkpoint.with_name("last_G.pt")
    if not plain.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state.pop("G_ema", None)
        torch.save(state, plain)
    return plain


def generate(checkpoint, flags, inputs, reference, out):
    """generate.py's mean scores of `checkpoint` on the test split."""
    if not (out / "scores.json").exists():
        run(["generate.py", "--checkpoint", str(checkpoint), "--input", str(inputs), "--output", str(out),
             "--reference", str(reference), *flags])
    return json.loads((out / "scores.json").read_text())["mean"]


def telea(holes, reference, mask_file):
    """{"hole_psnr": mean PSNR in the hole} of OpenCV's Telea fill (radius 3) of the mask's hole in every
    image; None without OpenCV."""
    try:
        import cv2
    except ImportError:
        return None
    mask = np.asarray(Image.open(mask_file).convert("L"))
    values = []
    for path in sorted(holes.iterdir()):
        page = np.asarray(Image.open(path).convert("RGB"))
        true = np.asarray(Image.open(reference / path.name).convert("RGB")).astype(np.float64) / 255
        filled = cv2.inpaint(page[..., ::-1].copy(), mask, 3, cv2.INPAINT_TELEA)[..., ::-1].astype(np.float64) / 255
        err = (filled - true)[mask > 0]
        values.append(10 * np.log10(1 / max(np.mean(err**2), 1e-10)))
    return {"hole_psnr": float(np.mean(values))}


FILLS = {"telea": ("OpenCV Telea fill", telea)}


# ----------------------------------------------------------------------------------------------------
# The table


def table(task, results, seeds):
    """Markdown: a row per variant, `score (seed ...) mean` per metric."""
    metrics = STUDY[task]["scores"]
    head = "| variant | " + " | ".join(f"{m} (seeds {', '.join(map(str, seeds))}: mean)" for m in metrics) + " |"
    lines = [head, "|---|" + "--:|" * len(metrics)]
    for label, per_seed in results.items():
        cells = []
        for m in metrics:
            values = [per_seed[s].get(m) for s in seeds if s in per_seed]
            values = [v for v in values if v is not None]
            cells.append(" / ".join(f"{v:.2f}" for v in values) + (f": **{np.mean(values):.2f}**" if len(values) > 1 else "")
                         if values else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study(task, args, data_root):
    plan, data, runs = STUDY[task], data_root / "set", args.out / "runs"
    inputs, reference, steps = data_root / plan["inputs"], data_root / plan["reference"], args.steps or plan["steps"]
    generate_flags = [str(data_root / f) if (data_root / f).is_file() else f for f in plan["generate"]]
    results = {}
    variants = {k: v for k, v in plan["trained"].items() if not args.variants or k in args.variants}
    for variant, flags in variants.items():
        for seed in args.seeds:
            name = f"{task}-{variant}-s{seed}"
            if args.report and not (runs / name / "test_scores.json").exists():
                continue
            checkpoint = train(task, flags, seed, steps, data, runs / name)
            means = generate(checkpoint, generate_flags, inputs, reference, args.out / "generated" / name)
            results.setdefault(f"train: {variant}", {})[seed] = means
            if variant != "baseline":
                continue
            for fill in sorted({k.split("_")[1] for k in means if k.startswith("baseline_")}):  # no network
                results.setdefault(f"no network: {fill}", {})[seed] = {m: means.get(f"baseline_{fill}_{m}")
                                                                      for m in plan["scores"]}
            for label, gen_flags, plain in plan["generated"]:
                source = without_average(checkpoint) if plain else checkpoint
                tag = hashlib.sha1(repr((gen_flags, plain)).encode()).hexdigest()[:8]
                results.setdefault(f"generate: {label}", {})[seed] = generate(
                    source, generate_flags + gen_flags, inputs, reference, args.out / "generated" / f"{name}-{tag}")
    for label, fill in (FILLS[name] for name in plan["fills"]):
        scores = fill(inputs, reference, data_root / "hole_mask.png")
        if scores is not None:
            results[f"no network: {label}"] = {seed: scores for seed in args.seeds}
    return table(task, results, args.seeds)


def main(args):
    data_root = args.out / "data"
    counts = prepare(data_root, args.side)
    if args.prepare_only:
        return 0
    print(f"Set: {counts}; seeds {args.seeds}\n")
    for task in args.tasks:
        print(f"\n### {task}\n\n{study(task, args, data_root)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
