"""What bf16 costs in quality: generate.py's outputs of one checkpoint in bf16 and in fp32, and each task's
demo trained to the same step in bf16 and in fp32. (How fast bf16 is: benchmarks/bench.py.)

    python benchmarks/precision_study.py --checkpoints runs/colorize-demo/best.pt runs/inpaint-demo/best.pt
    python benchmarks/precision_study.py --train --steps 200 --tasks colorize    # training, shortened

Outputs: held-out demo drawings (seeds from demo.DEMO_TEST_ID on) at --side pixels through generate.py
with --precision fp32 and bf16; the share of pixels whose channels all differ by 2 levels or less, and
the largest difference. Training: `python train.py --task TASK --precision P --steps N` with the demo
preset and the same seed, the last validation's score of each. On a CPU without native bf16 it is
emulated, several times slower than fp32: the comparison still holds, it only takes longer.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from common import REPO, generate_quietly  # first: it puts the repo's modules on the path
import demo
import tasks
import utils

LEVELS = 2  # 8-bit levels within which two outputs count as the same


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="*", default=[], help="checkpoints whose outputs are compared")
    p.add_argument("--side", type=int, default=256, help="side of the drawn test images")
    p.add_argument("--images", type=int, default=8, help="test images per checkpoint")
    p.add_argument("--train", action="store_true", help="also train each task's demo in both precisions")
    p.add_argument("--tasks", nargs="+", choices=list(tasks.TASKS), default=list(tasks.TASKS))
    p.add_argument("--steps", type=int, help="length of those runs (default: the demo's)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "precision-study", help="folder of those runs")
    return p


def compare_outputs(checkpoint, side, count):
    _, cfg = tasks.load_generator(checkpoint)
    task = tasks.TASKS[cfg["task"]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        for i in range(count):
            task.demo_input(task.draw(demo.DEMO_TEST_ID + i, side)).save(root / "in" / f"{i}.png")
        for precision in ("fp32", "bf16"):
            generate_quietly(["--checkpoint", checkpoint, "--input", root / "in", "--output", root / precision,
                              "--precision", precision])
        diff = np.concatenate([np.abs(np.asarray(Image.open(root / "fp32" / f"{i}.png"), np.int16)
                                      - np.asarray(Image.open(root / "bf16" / f"{i}.png"), np.int16)).max(axis=2).ravel()
                               for i in range(count)])
    return f"| {checkpoint} ({cfg['task']}) | {count} x {side}x{side} | {100 * (diff <= LEVELS).mean():.2f}% | {diff.max()} |"


def train_both(task, steps, out):
    scores = {}
    for precision in ("fp32", "bf16"):
        folder = out / (f"{task}-{precision}" + ("" if steps is None else f"-{steps}"))
        if not (folder / "test_scores.json").exists():
            length = [] if steps is None else ["--steps", str(steps)]
            subprocess.run([sys.executable, "train.py", "--task", task, "--precision", precision, "--out", str(folder),
                            *length], cwd=REPO, check=True)
        last = utils.read_csv(folder / "metrics.csv")[-1]
        scores[precision] = (int(last["step"]), float(last[tasks.TASKS[task].score]))
    (step, fp32), (_, bf16) = scores["fp32"], scores["bf16"]
    return f"| {task} | {step} | {tasks.TASKS[task].score} | {fp32:.2f} | {bf16:.2f} | {bf16 - fp32:+.2f} |"


def main(args):
    if args.checkpoints:
        print(f"| checkpoint | images | pixels within {LEVELS} levels | largest difference |\n|---|---|--:|--:|")
        print("\n".join(compare_outputs(c, args.side, args.images) for c in args.checkpoints) + "\n")
    if args.train:
        print("| task | step | score | fp32 | bf16 | bf16 - fp32 |\n|---|--:|---|--:|--:|--:|")
        print("\n".join(train_both(task, args.steps, args.out) for task in args.tasks))


if __name__ == "__main__":
    main(get_parser().parse_args())
