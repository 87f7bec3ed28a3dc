"""G judged as at test time: the scores of validation and of the test split, the sample grids, and
train.py --score, which scores a checkpoint's generator on its run's test split.

    python train.py --score runs/colorize-demo/best.pt
    python train.py --score runs/colorize-demo/best.pt --norm-stats image --test-dropout on
"""
import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

import data
import images
import model
import tasks
import utils

VAL_BATCH = 16  # test-time outputs do not depend on the batch (model.test_time), so any size will do
SAMPLE_MIN_SIDE = 128  # small demo images are enlarged in the grids so they can be seen


def run_at_test_time(G, task, batch, cfg, device, norm_stats):
    """G run on a batch as at test time (`norm_stats`, and dropout as cfg.test_dropout with a seed per image
    from its index in the dataset, batch[-1]), on each of the task's inputs (Task.test_inputs) -> {column
    prefix: ((input, output, target) as RGB in [0, 1], its XY)}."""
    seeds, runs = [model.image_seed(cfg.seed, i) for i in batch[-1].tolist()], {}
    for prefix, xy in task.test_inputs(task.batch_to_xy(batch, cfg, device), cfg).items():
        with model.test_time(G, norm_stats, cfg.test_dropout == "on", seeds), utils.autocast(device, cfg.autocast):
            fake = G(xy.x).float()
        runs[prefix] = task.pictures(xy, fake, cfg), xy
    return runs


@torch.no_grad()
def validate(G, task, loader, cfg, device, norm_stats, stop=lambda: False):
    """Scores of G run as at test time on the loader's readable images, next to the task's baselines that
    need no network -> (the means, a row per image); those of the batches before stop() said to stop."""
    sums, rows, count = {}, [], 0
    for batch in loader:
        if stop():
            break
        if batch is None:  # no readable image in it
            continue
        scores = {}
        for prefix, (pictures, xy) in run_at_test_time(G, task, batch, cfg, device, norm_stats).items():
            scores.update({prefix + k: v.double().cpu() for k, v in task.scores(*pictures, xy.hole).items()
                           if not prefix or not k.startswith(("baseline_", "reference_"))})
        names = [loader.dataset.name(i) for i in batch[-1].tolist()]
        rows += [{"image": utils.shown(name), **{k: v[i].item() for k, v in scores.items()}} for i, name in enumerate(names)]
        sums = {k: sums.get(k, 0.0) + v.sum().item() for k, v in scores.items()}
        count += len(names)
    return {k: v / max(count, 1) for k, v in sums.items()}, rows


@torch.no_grad()
def save_samples(G, task, batch, cfg, device, path):
    """A fixed batch of validation images as rows of [input | output | target], with an [input | output]
    pair for each of the task's inputs (colorize --hints: none, then 10 hints) before the target."""
    runs = [pictures for pictures, _ in run_at_test_time(G, task, batch, cfg, device, cfg.norm_stats).values()]
    columns = [picture for pictures in runs for picture in pictures[:2]] + [runs[0][2]]
    pictures = torch.stack(columns, dim=1).flatten(0, 1)  # (columns B, 3, S, S)
    if cfg.image_size < SAMPLE_MIN_SIDE:
        pictures = F.interpolate(pictures, scale_factor=SAMPLE_MIN_SIDE // cfg.image_size, mode="nearest")
    images.save_png(make_grid(pictures, nrow=len(columns), padding=2, pad_value=1.0), path)


def score_test_split(G, task, test_set, cfg, device, out, checkpoint_name, name="test_scores",
                     stop=lambda: False):
    """The test split, scored once: NAME.csv (a row per image) and NAME.json (the means, baselines
    included), in the folder `out` -> the means; None if there is no test split, or if stop() said to
    stop between two batches (Ctrl-C: a large split takes minutes), and then nothing is written."""
    if len(test_set) == 0:
        print("No test split: nothing scored.")
        return None
    means, rows = validate(G, task, data.scoring_loader(test_set, VAL_BATCH), cfg, device, cfg.norm_stats, stop)
    if stop():
        return None
    utils.write_scores(rows, means, out / f"{name}.csv", out / f"{name}.json", checkpoint=checkpoint_name,
                       images=len(rows), unreadable=len(test_set) - len(rows), norm_stats=cfg.norm_stats,
                       dropout=cfg.test_dropout, precision=cfg.autocast)
    print(f"Test split ({len(rows)} images, {checkpoint_name}, {cfg.norm_stats} statistics, dropout {cfg.test_dropout}): "
          + ", ".join(f"{k} {v:.4g}" for k, v in means.items() if not k.startswith("baseline")) + f" -> {out / name}.json")
    return means


def score_checkpoint(args, device):
    """--score: a checkpoint's generator on its run's test split (of --data, if the data has moved), at
    test time as the run chose or as --norm-stats, --test-dropout and --precision say. The scores go beside the
    checkpoint, named after it and the test-time mode, so that no other scores are overwritten."""
    checkpoint = utils.load_checkpoint(args.score)
    if "config" not in checkpoint:
        raise SystemExit(f"error: {args.score} is not a train.py checkpoint (no configuration in it)")
    cfg = argparse.Namespace(**tasks.checkpoint_config(checkpoint))
    cfg.data, cfg.test_limit = args.data or cfg.data, args.test_limit or cfg.test_limit
    task = tasks.TASKS[cfg.task]
    cfg.norm_stats = cfg.norm_stats if args.norm_stats == "auto" else args.norm_stats
    cfg.test_dropout = args.test_dropout or cfg.test_dropout
    cfg.precision = cfg.precision if args.precision == "auto" else args.precision
    cfg.autocast, _ = utils.resolve_precision(cfg.precision, device)
    if cfg.norm_stats not in task.norm_stats_modes(cfg):
        raise SystemExit(f"error: --norm-stats {cfg.norm_stats} is not for this network: use one of "
                         f"{', '.join(task.norm_stats_modes(cfg))}")
    if cfg.data and not Path(cfg.data).exists():
        raise SystemExit(f"error: the run's data {cfg.data} is gone: give its new place with --data")
    G = tasks.generator_for(vars(cfg))
    G.load_state_dict(checkpoint.get("G_ema", checkpoint["G"]))
    *_, test_set = data.build_datasets(cfg, task, None)
    path = Path(args.score)
    score_test_split(G.to(device), task, test_set, cfg, device, path.parent, path.name,
                     name=f"test_scores_{path.stem}_{cfg.norm_stats}_dropout-{cfg.test_dropout}")
    return 0
