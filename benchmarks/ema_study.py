"""Does an average of G's weights (train.py --ema) score better than G itself? Each task's demo is trained
once per decay with the real command, `python train.py --task TASK --ema DECAY`. The average does not
change training (it consumes no random numbers), so every validation in metrics.csv scores G (no_ema_*)
and its average at the same step, on the same held-out images: with and without, from one run.

    python benchmarks/ema_study.py                              # both demos, decays 0.99 and 0.999
    python benchmarks/ema_study.py --tasks colorize --decays 0.999

Runs go to runs/ema-study/<task>-<decay>; a finished one is read again, not retrained. Prints a markdown
table: the validation score of G and of its average at the last step and at their best step.
"""
import argparse
import subprocess
import sys
from pathlib import Path

from common import REPO  # first: it puts the repo's modules on the path
import tasks
import utils


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=list(tasks.TASKS), default=list(tasks.TASKS))
    p.add_argument("--decays", nargs="+", type=float, default=[0.99, 0.999])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "ema-study")
    return p


def train(task, decay, out):
    """The demo of `task` with --ema `decay`, unless a finished run is in `out` (a stopped one goes on)."""
    if not (out / "test_scores.json").exists():
        start = ["--resume", str(out / "last.pt")] if (out / "last.pt").exists() else ["--out", str(out)]
        subprocess.run([sys.executable, "train.py", "--task", task, "--ema", str(decay), *start], cwd=REPO, check=True)
    return utils.read_csv(out / "metrics.csv")


def main(args):
    lines = ["| task | decay | score | G, last | average, last | G, best (step) | average, best (step) |",
             "|---|--:|---|--:|--:|--:|--:|"]
    for task in args.tasks:
        score = tasks.TASKS[task].score
        for decay in args.decays:
            rows = train(task, decay, args.out / f"{task}-{decay:g}")
            g, avg = ([float(r[k]) for r in rows] for k in (f"no_ema_{score}", score))
            steps = [int(r["step"]) for r in rows]
            best_g, best_avg = max(range(len(g)), key=g.__getitem__), max(range(len(avg)), key=avg.__getitem__)
            lines.append(f"| {task} | {decay:g} | {score} | {g[-1]:.2f} | {avg[-1]:.2f} | {g[best_g]:.2f} "
                         f"({steps[best_g]}) | {avg[best_avg]:.2f} ({steps[best_avg]}) |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(get_parser().parse_args())
