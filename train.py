"""Train Pix2Pix colorization of comic panels, or Context Encoder inpainting of faces.

    python train.py                                    # colorize the built-in demo panels (2-core CPU: README)
    python train.py --task inpaint                     # inpaint the built-in demo faces
    python train.py --task colorize --data raw_panel_images          # COMICS, the paper's large-set preset
    python train.py --task inpaint --data celeba --train-limit 80000 --val-limit 2000
    torchrun --standalone --nproc_per_node=4 train.py --data raw_panel_images      # 4 GPUs
    python train.py --resume runs/colorize-demo/last.pt     # go on exactly where a run stopped
    python train.py --score runs/colorize-demo/best.pt      # score a checkpoint on the test split
    python train.py --export runs/colorize-demo/best.pt model.pt --export-dtype bf16   # the generator alone

Steps drive a run: the learning rate (constant, then, unless --epochs-decay is 0, linear decay to exactly 0
after the last step), validation, samples, curves and checkpoints all count optimization steps; --steps,
or --epochs and --epochs-decay in passes over the training set, give the length. Writes a run folder (--out): index.html
(the page to look at), config.json, last.pt, best.pt, metrics.csv (a row per validation), plot.png,
samples/step_XXXXXXXX.png ([input | output | target] on a fixed validation batch) and, at the end,
test_scores.csv/.json. --batch-size is per process: under torchrun the global batch is N times larger.

What makes each task what it is (its presets, its (x, y), what D judges, its scores) is in its own file,
colorize.py or inpaint.py; this file asks the task object and never branches on the task.
"""
import argparse
import copy
import functools
import itertools
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torchvision.utils import make_grid
from tqdm import tqdm

import classes
import demo
import model
import pages
import tasks
import utils

# Flags that may change when a run is resumed; the others would change the networks, the objective or
# the order of the data, and are refused (--batch-size may change with the number of processes, if the
# images per step stay the same: check_resumed_schedule).
RESUMABLE = {"steps", "epochs", "epochs_decay", "stop_at", "device", "workers", "save_every_min", "val_every", "out",
             "val_images", "test_limit", "data", "precision", "compile", "channels_last", "sync_bn", "batch_size"}
# Everything a run writes into its folder: a folder holding any of it belongs to that run.
RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.csv", "plot.png", "samples", "test_scores.csv",
             "test_scores.json")
CHECKPOINTS = ("last.pt", "best.pt")
VAL_EVERY_MAX = 1000  # default validation interval: every epoch, but at least every 1000 steps
VAL_BATCH = 16  # test-time outputs do not depend on the batch (model.test_time), so any size will do
PLOT_EVERY_S = 30  # matplotlib takes about a second: redraw the curves at most this often, and at the end
SAMPLE_IMAGES = 8  # rows of the [input | output | target] grids
SAMPLE_MIN_SIDE = 128  # small demo images are enlarged in the grids so they can be seen
PROGRESS_EVERY = 10  # steps between updates of the progress bar's losses: reading them waits for the GPU


def get_parser():
    p = utils.Parser(description=__doc__, formatter_class=utils.HelpFormatter)
    count, natural, positive, nonnegative = utils.POSITIVE_INT, utils.NATURAL, utils.POSITIVE, utils.NONNEGATIVE
    g = p.add_argument_group("data")
    g.add_argument("--task", choices=list(tasks.TASKS), default=next(iter(tasks.TASKS)), help="what to learn")
    g.add_argument("--data", help="COMICS raw_panel_images, a CelebA folder, or an organized tree (DIR/train, "
                   "DIR/val, DIR/test) (default: the built-in procedural demo)")
    g.add_argument("--image-size", type=count, help=f"network resolution (default: {by_task('image_size')})")
    g.add_argument("--load-size", type=count, help=f"shorter side before the random crop (default: {by_task('load_size')})")
    g.add_argument("--train-limit", type=count, help="use only the first N training images (default: all)")
    g.add_argument("--val-limit", type=count, help="use only the first N validation images (default: all)")
    g.add_argument("--test-limit", type=count, help="score only the first N test images (default: all)")
    g.add_argument("--val-images", type=count, help=f"validation images scored at every validation, evenly spaced "
                   f"among those (default: {by_task('val_images')})")
    g.add_argument("--demo-images", type=count, help=f"size of the procedural demo training set "
                   f"(default: {by_task('demo_images')})")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the by-book COMICS split (as classes.py's)")
    g.add_argument("--fill", choices=["white", "mean", "zero"], default="white", help="inpaint: colour of the hole")
    g.add_argument("--hole-position", choices=["center", "random"], default="center",
                   help="inpaint: where the hole is in training images")
    g = p.add_argument_group("model")
    g.add_argument("--netG", choices=list(model.MIN_SIDE), help=f"generator (default: {by_task('netG')})")
    g.add_argument("--netD", choices=["patch", "context"], help="discriminator: 70x70 PatchGAN on (input, output) "
                   f"pairs, or the Context Encoder's on the patch (default: {by_task('netD')}; with --netG unet, patch)")
    g.add_argument("--ngf", type=count, help=f"generator base width (default: {by_task('ngf')})")
    g.add_argument("--ndf", type=count, help=f"discriminator base width (default: {by_task('ndf')})")
    g.add_argument("--norm", choices=["batch", "instance"], default="batch", help="normalization layers")
    g.add_argument("--bottleneck", type=count, help=f"Context Encoder bottleneck channels (default: {by_task('bottleneck')})")
    g = p.add_argument_group("objective")
    g.add_argument("--rec-loss", choices=["l1", "l2"], help=f"reconstruction loss (default: {by_task('rec_loss')})")
    g.add_argument("--lambda-rec", "--lambda-l1", dest="lambda_rec", type=nonnegative,
                   help=f"weight of the reconstruction term (default: {by_task('lambda_rec')})")
    g.add_argument("--lambda-adv", type=nonnegative, help=f"weight of the adversarial term (default: {by_task('lambda_adv')}: "
                   "1 - lambda_rec whenever 0 < --lambda-rec < 1, as the Context Encoder mixes them)")
    g.add_argument("--overlap", type=natural, default=0, help="inpaint: px of the predicted patch left visible around "
                   "the hole, weighted 10x in the loss (the paper's overlapPred: 4)")
    g = p.add_argument_group("schedule", "A run's length is --steps, or else --epochs + --epochs-decay passes over the "
                             "training set: the lr is constant, then decays linearly to exactly 0 after the last step "
                             "(with --epochs-decay above 0; the Context Encoder's paper keeps it constant).")
    g.add_argument("--steps", type=count, help="the run's length in steps, split between constant and decaying lr as "
                   "--epochs and --epochs-decay are (default: from the epochs)")
    g.add_argument("--epochs", type=nonnegative, help=f"passes at the initial lr (default: {by_task('epochs')})")
    g.add_argument("--epochs-decay", type=nonnegative, help=f"then passes of linear decay to zero "
                   f"(default: {by_task('epochs_decay')})")
    g.add_argument("--batch-size", type=count, help=f"images per process and step (default: {by_task('batch_size')})")
    g.add_argument("--lr", type=positive, default=2e-4, help="Adam learning rate of D (G's is --lr-g-mult times it)")
    g.add_argument("--lr-g-mult", type=positive, help=f"G's lr multiplier (default: {by_task('lr_g_mult')}: the Context "
                   "Encoder's original code uses 10 whenever 0 < --lambda-rec < 1)")
    g.add_argument("--beta1", type=utils.number(float, 0, 1), default=0.5, help="Adam beta1, in [0, 1)")
    g.add_argument("--ema", type=utils.number(float, 0, 1), help="decay of an average of G's weights, which validation, "
                   f"best.pt, the test split, --export and generate.py then use; 0: none (default: {by_task('ema') or 0})")
    g.add_argument("--seed", type=int, default=0, help="random seed (each rank adds its rank)")
    g = p.add_argument_group("test time", "How validation, best.pt, the test split and (by default) generate.py run G.")
    g.add_argument("--norm-stats", choices=["auto", *model.NORM_STATS], default="auto",
                   help="BatchNorm at test time: each image's own statistics (the paper's batch-1 test) or "
                   "the running averages; auto: image when training at batch 1, else running")
    g.add_argument("--test-dropout", choices=["off", "on"], help="dropout at test time, off by default (it is always "
                   "on in training; the paper keeps it on at test time too, for stochastic outputs)")
    g = p.add_argument_group("logging")
    g.add_argument("--out", help="run folder (default: runs/<task>, runs/<task>-demo for the demo; runs/<task>-2, -3, "
                   "... if that holds a run)")
    g.add_argument("--val-every", type=count, help=f"steps between validations, sample grids, curves and checkpoints "
                   f"(default: a pass, at most {VAL_EVERY_MAX})")
    g.add_argument("--save-every-min", type=nonnegative, default=15.0, help="minutes between checkpoints in between")
    g = p.add_argument_group("system")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="training device")
    g.add_argument("--workers", type=natural, help="data loading processes per GPU process (default: the CPU cores "
                   "per process less one, at most 8)")
    g.add_argument("--precision", choices=["auto", *utils.DTYPES], default="auto", help="autocast precision (auto: "
                   "bf16 on CUDA and on CPUs that execute it natively, else fp32)")
    g.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convs on GPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile G and D")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs (CUDA only)")
    g = p.add_argument_group("resuming and stopping")
    g.add_argument("--resume", metavar="CHECKPOINT", help="continue the run whose checkpoint CHECKPOINT is (its last.pt)")
    g.add_argument("--stop-at", type=count, metavar="STEP", help="stop and save at step STEP, to continue later with "
                   "--resume; the schedule stays the whole run's (default: at the end of the run)")
    g = p.add_argument_group("other jobs (then stop)")
    g.add_argument("--score", metavar="CHECKPOINT", help="score CHECKPOINT on its run's test split (with --norm-stats, "
                   "--test-dropout, --precision if given)")
    g.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "OUT"), help="write CHECKPOINT's generator "
                   "and configuration alone to OUT (for generate.py)")
    g.add_argument("--export-dtype", choices=list(utils.DTYPES), default="fp32", help="weights of --export")
    return p


def by_task(key):
    """A setting's default in each task's presets, for --help: 'colorize 1 (200k+ images 4, demo 4), inpaint 64
    (demo 32)'. Settings that follow from others (task.defaults) are shown as they follow from the preset."""
    shown = []
    for name, task in tasks.TASKS.items():
        presets = {"": task.paper, "demo": task.demo_preset}
        if task.large_set:
            presets = {"": task.paper, f"{task.large_set_images // 1000}k+ images": {**task.paper, **task.large_set},
                       "demo": task.demo_preset}
        values = {}
        for label, preset in presets.items():
            cfg = dict(preset, norm="batch", norm_stats="auto")
            cfg.update({k: v for k, v in task.defaults(cfg).items() if cfg.get(k) in (None, "auto")})
            values[label] = f"{cfg[key]:g}" if isinstance(cfg.get(key), float) else cfg.get(key)
        others = [f"{label} {v}" for label, v in values.items() if label and v != values[""] and v is not None]
        first = "" if values[""] is None else f" {values['']}"
        if first or others:
            shown.append(f"{name}{first}" + (f" ({', '.join(others)})" if others else ""))
    return ", ".join(shown)


# ----------------------------------------------------------------------------------------------------
# Set-up: the configuration and the run folder, the data, the networks and their optimizers


def find_splits(data, task, seed):
    """{'train', 'val', 'test': image paths} of --data, or a one-line exit."""
    if not Path(data).exists():
        raise SystemExit(f"error: --data {data} does not exist")
    try:
        return classes.find_splits(data, tasks.TASKS[task].dataset, seed=seed)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")


def resolve_config(args, checkpoint):
    """The run's configuration: the checkpoint's when resuming (with the flags that may change), else the
    flags with the unset ones taken from the task's paper preset (its large-set preset on 200k+ images)
    or, without --data, its demo preset."""
    explicit = {k for k, v in vars(args).items() if v != get_parser().get_default(k)} - {"resume", "score"}
    if checkpoint:
        # Settings that the run's train.py did not have yet take their defaults; --stop-at is for one session.
        cfg = {**vars(get_parser().parse_args([])), **tasks.checkpoint_config(checkpoint), "stop_at": None}
        cfg["ema"] = cfg["ema"] or 0.0
        changed = sorted(k for k in explicit if getattr(args, k) != cfg.get(k))
        refused = [f"--{k.replace('_', '-')}" for k in changed if k not in RESUMABLE]
        if refused:
            raise SystemExit(f"error: {', '.join(refused)} would change the resumed run's networks, objective or "
                             f"data order: start a new run instead")
        cfg.update({k: getattr(args, k) for k in changed}, resume=args.resume)
        cfg["out"] = str(resume_folder(args, checkpoint))
        if cfg["data"] and not Path(cfg["data"]).exists():
            raise SystemExit(f"error: the run's data {cfg['data']} is gone: give its new place with --data")
        return argparse.Namespace(**cfg), None
    task = tasks.TASKS[args.task]
    splits = find_splits(args.data, args.task, args.split_seed) if args.data else None
    preset = task.demo_preset if splits is None else task.paper
    if splits and task.large_set and len(splits["train"][:args.train_limit]) >= task.large_set_images:
        preset = {**preset, **task.large_set}
    cfg = vars(args).copy()
    cfg.update({k: v for k, v in preset.items() if cfg.get(k) is None})
    cfg.update({k: v for k, v in task.defaults(cfg).items() if cfg.get(k) in (None, "auto")})
    cfg["test_dropout"], cfg["ema"] = cfg["test_dropout"] or "off", cfg["ema"] or 0.0
    check_config(cfg, task)
    if cfg["out"] is None:
        cfg["out"] = free_run_folder(Path("runs") / (args.task + ("" if args.data else "-demo")))
    else:
        check_new_folder(Path(cfg["out"]))
    return argparse.Namespace(**cfg), splits


def check_config(cfg, task):
    """Refuse impossible settings with one line, before any work is done."""
    problems = task.problems(cfg)
    if cfg["load_size"] < cfg["image_size"]:
        problems.append(f"--load-size {cfg['load_size']} is smaller than --image-size {cfg['image_size']}")
    if cfg["epochs"] + cfg["epochs_decay"] == 0:
        problems.append("--epochs 0 and --epochs-decay 0 leave the run no step")
    try:
        model.check_image_size(cfg["netG"], cfg["image_size"])
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise SystemExit("error: " + "; ".join(problems))


def holds_run(folder):
    """The files of a run that `folder` holds (none: it is free for a new run)."""
    return [name for name in RUN_FILES if (Path(folder) / name).exists()]


def check_new_folder(out):
    """A new run's --out: a folder of no other run, or one to be made."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file, not a folder")
    if holds_run(out):
        how = f"continue it with --resume {out / 'last.pt'}, or " if (out / "last.pt").exists() else ""
        raise SystemExit(f"error: {out} already holds a run ({', '.join(holds_run(out))}): {how}choose another --out")


def free_run_folder(base):
    """runs/colorize, or runs/colorize-2, -3, ... so that a new run never overwrites an old one."""
    candidate, n = base, 1
    while holds_run(candidate) or candidate.is_file():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return str(candidate)


def checkpoint_step(path):
    """The step of a checkpoint file, reading nothing else of it (-1 if it cannot be read)."""
    try:
        return int(utils.read_weights(Path(path))["step"])
    except (ValueError, KeyError, TypeError):
        return -1


def resume_folder(args, checkpoint):
    """Where a resumed run goes on: the checkpoint's own folder, unless a newer checkpoint there would be
    overwritten (then --out must name a new folder), or --out, which must not hold another run. A new
    folder starts with the run's metrics up to the checkpoint's step (start_report)."""
    source = Path(args.resume).parent
    out = Path(args.out) if args.out else source
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file, not a folder")
    if out.exists() and out.resolve() == source.resolve():
        for name in CHECKPOINTS:
            other = source / name
            if other.exists() and not other.samefile(args.resume) and checkpoint_step(other) > checkpoint["step"]:
                raise SystemExit(f"error: {other} (step {checkpoint_step(other)}) is newer than {args.resume} (step "
                                 f"{checkpoint['step']}), and going on in {source} would overwrite it: continue "
                                 f"{args.resume} in a new folder with --out DIR")
    elif holds_run(out):
        raise SystemExit(f"error: {out} holds another run ({', '.join(holds_run(out))}): resume {args.resume} in its "
                         f"own folder {source}, or in a new one with --out DIR")
    return out


def build_datasets(cfg, task, splits):
    """Training, validation and test sets: the procedural demo, or the files of --data. The validation
    split must not be empty: the test split stays unseen until the end of the run. Unreadable images are
    replaced in training and left out of the scores."""
    train_tf, val_tf = task.transforms(cfg)
    if cfg.data is None:
        return (task.demo_set(cfg, cfg.demo_images, demo.DEMO_TRAIN_ID, train_tf),
                task.demo_set(cfg, cfg.val_images, demo.DEMO_VAL_ID, val_tf),
                task.demo_set(cfg, cfg.val_images, demo.DEMO_TEST_ID, val_tf))
    splits = splits or find_splits(cfg.data, cfg.task, cfg.split_seed)
    files = {"train": splits["train"][:cfg.train_limit], "val": splits["val"][:cfg.val_limit],
             "test": splits["test"][:cfg.test_limit]}
    for split in ("train", "val"):
        if not files[split]:
            counts = ", ".join(f"{len(v):,} {k}" for k, v in files.items())
            raise SystemExit(f"error: {cfg.data} has no {split} images ({counts}); the test split is never "
                             f"used in their place")
    # Evenly spaced, so that a by-book sorted list gives images from many books.
    files["val"] = files["val"][::max(1, len(files["val"]) // cfg.val_images)][:cfg.val_images]
    return (classes.ImageDataset(files["train"], train_tf), classes.ImageDataset(files["val"], val_tf, replace=False),
            classes.ImageDataset(files["test"], val_tf, replace=False))


def build_loader(train_set, cfg, world, rank, device):
    """The training loader and its sampler, which can start mid-epoch so that a resumed run sees exactly
    the batches an uninterrupted one would have seen."""
    workers = cfg.workers if cfg.workers is not None else min(8, max(1, (os.cpu_count() or 2) // world - 1))
    sampler = classes.ResumableSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    shield = multiprocessing.Value("b", 1)  # cleared when training ends: see shield_from_stop_signals
    # The loader gets its own generator: the jitter has per-sample seeds, and drawing worker seeds from the
    # global RNG would shift the dropout stream of a resumed run.
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=cfg.batch_size > 1,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        worker_init_fn=functools.partial(shield_from_stop_signals, shield), generator=torch.Generator())
    if len(loader) == 0:
        raise SystemExit(f"error: {len(train_set)} training images make no batch of {cfg.batch_size} per process")
    return loader, sampler, shield


def shield_from_stop_signals(shield, _):
    """A loader worker's set-up. Ctrl-C and a scheduler's SIGTERM go to the whole process group: while the
    main process trains (shield set), it saves a checkpoint and then stops the workers itself, since a
    worker dying first would turn a clean stop into a crash. Once training is over, SIGTERM stops a worker
    as usual (Python's exit stops its processes with it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_sigterm(signum, frame):
        if not shield.value:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def batches_from(loader, sampler, start_step, batch_size):
    """The loader's batches from step `start_step` on, epoch after epoch; every epoch has the same
    number of steps (drop_last), so the step says where in which epoch the run is."""
    epoch, done = divmod(start_step, len(loader))
    while True:
        sampler.set_epoch(epoch, start=done * batch_size)
        yield from loader
        epoch, done = epoch + 1, 0


def run_length(cfg, steps_per_epoch):
    """(steps in all, steps of lr decay) of the run: --steps split as the epochs are, or the epochs. Any
    decay at all lasts a step at least, so that the lr is exactly 0 after the last step."""
    epochs = cfg.epochs + cfg.epochs_decay
    if cfg.steps:
        total, decay = cfg.steps, round(cfg.steps * cfg.epochs_decay / epochs) if epochs else 0
    else:
        total, decay = max(1, round(epochs * steps_per_epoch)), round(cfg.epochs_decay * steps_per_epoch)
    return total, min(total, max(decay, 1 if cfg.epochs_decay else 0))


def check_resumed_schedule(checkpoint, cfg, world, steps_per_epoch):
    """A resumed run keeps its schedule: the same images per step (batch x processes) and steps per pass,
    so that the step, the lr and the place in the data go on where they were. Another number of processes
    is fine with a --batch-size that keeps the images per step."""
    old_world = checkpoint.get("world", len(checkpoint["rng"]))
    old_batch = checkpoint["config"]["batch_size"]
    images = old_batch * old_world
    if cfg.batch_size * world != images:
        fits = f"--batch-size {images // world}" if images % world == 0 else f"{old_world} processes"
        raise SystemExit(f"error: the run took {images} images a step ({old_batch} x {old_world} processes), this "
                         f"would take {cfg.batch_size * world} ({cfg.batch_size} x {world}): resume it with {fits}, "
                         f"so that its schedule and data order go on")
    if checkpoint.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch:
        raise SystemExit(f"error: a pass over the data was {checkpoint['steps_per_epoch']} steps and would be "
                         f"{steps_per_epoch}: resume with {old_world} processes of {old_batch} images")


def build_networks(cfg, device, world, checkpoint, total, decay):
    """G and D (the raw modules, which the checkpoint holds) and what trains them: their wrappers,
    optimizers, lr schedules and grad scaler; at the checkpoint's state when resuming."""
    G = tasks.build_generator(cfg.task, cfg.netG, cfg.image_size, cfg.ngf, cfg.norm, cfg.bottleneck).to(device)
    D = tasks.build_discriminator(cfg.task, cfg.netG, cfg.netD, cfg.image_size, cfg.ndf, cfg.norm).to(device)
    run = SimpleNamespace(G=G, D=D, step=0, best=None, params={"G": model.num_params(G), "D": model.num_params(D)})
    run.opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr * cfg.lr_g_mult, betas=(cfg.beta1, 0.999))
    run.opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))

    def lr_factor(step):  # constant, then linear decay over the last `decay` steps to exactly 0 after the last
        return min(1.0, (total - step) / decay) if decay else 1.0

    run.sched_G = torch.optim.lr_scheduler.LambdaLR(run.opt_G, lr_factor)
    run.sched_D = torch.optim.lr_scheduler.LambdaLR(run.opt_D, lr_factor)
    run.scaler = torch.amp.GradScaler(device.type, enabled=cfg.autocast == "fp16")
    if checkpoint:
        for name in ("G", "D", "opt_G", "opt_D", "sched_G", "sched_D"):
            getattr(run, name).load_state_dict(checkpoint[name])
        if run.scaler.is_enabled() and checkpoint["scaler"]:  # empty when the run was not fp16: a fresh scale
            run.scaler.load_state_dict(checkpoint["scaler"])
        run.step, run.best = checkpoint["step"], checkpoint["best"]
        restore_rng(checkpoint["rng"], device, world)
    run.G, run.D, run.G_train, run.D_train, run.D_for_G = wrap_for_training(G, D, cfg, world, device)
    run.ema = EMA(run.G, cfg.ema) if cfg.ema else None
    if run.ema and checkpoint:
        run.ema.average.load_state_dict(checkpoint["G_ema"])
    return run


class EMA:
    """An exponential moving average of G's weights (Polyak averaging; progressive GANs, StyleGAN and most
    GANs since test with one), updated after every step: average = d * average + (1 - d) * G. The decay
    warms up as min(d, (1 + step) / (10 + step)), as TensorFlow's ExponentialMovingAverage(num_updates), so
    that the random init does not linger for thousands of steps. The parameters are averaged; BatchNorm's
    running statistics are G's own, copied when the average is used. G's parameters are the same on every
    rank (DDP), so is their average: no communication, and no wait for the GPU (in-place arithmetic)."""

    def __init__(self, G, decay):
        self.decay, self.G = decay, G
        self.average = copy.deepcopy(G).requires_grad_(False).eval()
        self.pairs = list(self.average.parameters()), list(G.parameters())

    @torch.no_grad()
    def update(self, step):
        torch._foreach_lerp_(*self.pairs, 1 - min(self.decay, (1 + step) / (10 + step)))  # one fused call

    @torch.no_grad()
    def averaged(self):
        """The averaged generator, with G's running statistics."""
        for mine, theirs in zip(self.average.buffers(), self.G.buffers()):
            mine.copy_(theirs)
        return self.average


def test_generator(run):
    """The generator that validation, best.pt and the test split judge: the average, if there is one."""
    return run.ema.averaged() if run.ema else run.G


def wrap_for_training(G, D, cfg, world, device):
    """The modules that train: SyncBatchNorm, channels-last, DDP and torch.compile around the raw G and D.
    D_for_G is D as the G step uses it, where no gradient of D is wanted: without DDP, so that DDP does
    not wait for gradients that never come."""
    if cfg.sync_bn:
        if device.type != "cuda":
            raise SystemExit("error: --sync-bn needs CUDA (SyncBatchNorm has no CPU kernels)")
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    if cfg.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_train, D_train, D_for_G = G, D, D
    if world > 1:
        G_train, D_train = DDP(G), DDP(D)
    if cfg.compile:
        G_train, D_train, D_for_G = torch.compile(G_train), torch.compile(D_train), torch.compile(D)
    return G, D, G_train, D_train, D_for_G


def rng_states(device, world):
    """Every rank's RNG states (dropout), gathered for the checkpoint."""
    state = {"cpu": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


def restore_rng(states, device, world):
    rank = dist.get_rank() if world > 1 else 0
    if len(states) != world:
        print(f"warning: the run had {len(states)} processes, now {world}: the random streams restart")
        return
    torch.set_rng_state(states[rank]["cpu"])
    if device.type == "cuda" and len(states[rank]["cuda"]):
        torch.cuda.set_rng_state(states[rank]["cuda"], device)


def save(run, cfg, device, world, *paths):
    """last.pt (and best.pt): everything needed to resume exactly, or to generate. Rank 0 writes, every
    rank waits for it. Never weights that are not finite: the files keep the last good state."""
    weights = [t for net in (run.G, run.D) for t in net.state_dict().values() if t.is_floating_point()]
    if run.stop.agree(not torch.stack([torch.isfinite(t).all() for t in weights]).all().item()):
        raise Diverged(f"the weights at step {run.step} are not finite")
    steps_per_epoch = run.steps_per_epoch
    state = {"G": run.G.state_dict(), "D": run.D.state_dict(), "opt_G": run.opt_G.state_dict(),
             "opt_D": run.opt_D.state_dict(), "sched_G": run.sched_G.state_dict(), "sched_D": run.sched_D.state_dict(),
             "scaler": run.scaler.state_dict(), "step": run.step, "epoch": run.step // steps_per_epoch,
             "epoch_step": run.step % steps_per_epoch, "steps_per_epoch": steps_per_epoch, "world": world,
             "best": run.best, "rng": rng_states(device, world), "config": vars(cfg), "params": run.params}
    if run.ema:
        state["G_ema"] = run.ema.averaged().state_dict()
    for path in paths if utils.rank() == 0 else []:
        utils.save_checkpoint(state, path)
    utils.barrier()


class Diverged(Exception):
    """A loss, a score or the weights are no longer finite (NaN or infinite)."""


# ----------------------------------------------------------------------------------------------------
# The every-N-steps work: validation, samples, curves, best.pt (rank 0); and the test scores at the end


@torch.no_grad()
def validate(G, task, loader, cfg, device, norm_stats):
    """Scores of G run as at test time (`norm_stats`, and dropout as cfg.test_dropout, seeded per image) on
    the loader's readable images, next to the task's baselines that need no network -> (the means, a row
    per image)."""
    sums, rows, count = {}, [], 0
    for batch in loader:
        if batch is None:  # no readable image in it
            continue
        pictures, extra = test_pictures(G, task, batch, cfg, device, norm_stats)
        scores = {k: v.double().cpu() for k, v in task.scores(*pictures, extra).items()}
        names = [loader.dataset.name(i) for i in batch[-1].tolist()]
        rows += [{"image": utils.shown(name), **{k: v[i].item() for k, v in scores.items()}} for i, name in enumerate(names)]
        sums = {k: sums.get(k, 0.0) + v.sum().item() for k, v in scores.items()}
        count += len(names)
    return {k: v / max(count, 1) for k, v in sums.items()}, rows


def test_pictures(G, task, batch, cfg, device, norm_stats):
    """G run on a batch as at test time (`norm_stats`, and dropout as cfg.test_dropout with a seed per image
    from its index in the dataset, batch[-1]) -> ((input, output, target) as RGB in [0, 1], the task's extra)."""
    x, y, _, extra = task.prepare(batch, cfg, device)
    seeds = [model.image_seed(cfg.seed, i) for i in batch[-1].tolist()]
    with model.test_time(G, norm_stats, cfg.test_dropout == "on", seeds), utils.autocast(device, cfg.autocast):
        fake = G(x).float()
    return task.pictures(x, fake, y, extra, cfg), extra


@torch.no_grad()
def save_samples(G, task, batch, cfg, device, path):
    """The fixed validation batch as rows of [input | output | target]."""
    pictures, _ = test_pictures(G, task, batch, cfg, device, cfg.norm_stats)
    pictures = torch.stack(pictures, dim=1).flatten(0, 1)  # (3B, 3, S, S)
    if cfg.image_size < SAMPLE_MIN_SIDE:
        pictures = F.interpolate(pictures, scale_factor=SAMPLE_MIN_SIDE // cfg.image_size, mode="nearest")
    utils.save_png(make_grid(pictures, nrow=3, padding=2, pad_value=1.0), path)


def scoring_loader(dataset, batch_size):
    # Its own generator: a loader seeds itself from the global RNG, which would shift the dropout stream.
    return DataLoader(dataset, batch_size=batch_size, collate_fn=classes.collate_readable, generator=torch.Generator())


def start_report(cfg, val_set, step):
    """Rank 0's validation loader, fixed sample batch and metrics rows; the step-0 samples of a new run."""
    out = Path(cfg.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    utils.write_json(out / "config.json", vars(cfg))
    sample_batch = next((b for b in scoring_loader(val_set, SAMPLE_IMAGES) if b is not None), None)
    if sample_batch is None:
        raise SystemExit(f"error: none of the {len(val_set)} validation images can be read")
    report = SimpleNamespace(out=out, loader=scoring_loader(val_set, VAL_BATCH), sample_batch=sample_batch,
                             t0=time.time(), plotted=0.0)
    # The run's metrics up to its checkpoint (a resumed run drops the rows written after it), from the
    # checkpoint's own folder when it goes on in a new one.
    history = Path(cfg.resume).parent if cfg.resume else out
    report.rows = [r for r in utils.read_csv(history / "metrics.csv") if int(r["step"]) <= step]
    utils.write_csv(out / "metrics.csv", report.rows)
    return report


def evaluate(run, task, cfg, report, device, world, losses, skipped, last):
    """Every --val-every steps: validate (rank 0; the others wait in save), draw the samples and the
    curves, save last.pt and, if the score improved, best.pt. The other test-time normalization is
    scored too, so the choice of --norm-stats rests on numbers."""
    improved, score = False, 0.0
    if report:
        G = test_generator(run)
        metrics, _ = validate(G, task, report.loader, cfg, device, cfg.norm_stats)
        for other in (m for m in task.norm_stats_modes(vars(cfg)) if m != cfg.norm_stats):
            other_metrics, _ = validate(G, task, report.loader, cfg, device, other)
            metrics.update({f"{other}_stats_{k}": other_metrics[k] for k in (task.score, "ssim")})
        if run.ema:  # G itself beside its average, at the same step
            raw, _ = validate(run.G, task, report.loader, cfg, device, cfg.norm_stats)
            metrics.update({f"no_ema_{k}": raw[k] for k in (task.score, "ssim")})
        score = metrics[task.score]
    if run.stop.agree(not math.isfinite(score)):
        raise Diverged(f"the validation {task.score} at step {run.step} is {score}")
    if report:
        improved = run.best is None or score > run.best
        run.best = score if improved else run.best
        row = {"step": run.step, "epoch": f"{run.step / run.steps_per_epoch:.4g}", "lr": run.sched_D.get_last_lr()[0],
               **dict(zip(["loss_D", "loss_G_adv", "loss_G_rec"], losses)), **metrics,
               "skipped_files": skipped, "seconds": round(time.time() - report.t0, 1)}
        report.rows.append(row)
        utils.write_csv(report.out / "metrics.csv", report.rows)
        if last or time.time() - report.plotted > PLOT_EVERY_S:
            utils.plot_metrics(report.rows, report.out / "plot.png")
            report.plotted = time.time()
        save_samples(G, task, report.sample_batch, cfg, device, report.out / "samples" / f"step_{run.step:08d}.png")
        pages.run_page(report.out, vars(cfg), report.rows, f"Step {run.step:,} of {run.total:,}: validated at "
                       f"{time.strftime('%Y-%m-%d %H:%M')}, {task.score} {score:.4g}.")
        tqdm.write(f"step {run.step} (epoch {row['epoch']}) | D {losses[0]:.3f} G_adv {losses[1]:.3f} G_rec "
                   f"{losses[2]:.4f} | val {task.score} {score:.2f} (baseline {metrics[task.baseline]:.2f}) "
                   f"ssim {metrics['ssim']:.3f} | skipped files {skipped}")
    save(run, cfg, device, world, Path(cfg.out) / "last.pt", *([Path(cfg.out) / "best.pt"] if improved else []))


def score_test_split(G, task, test_set, cfg, device, out, checkpoint_name, name="test_scores"):
    """The test split, scored once: NAME.csv (a row per image) and NAME.json (the means, baselines
    included), in the run folder."""
    if len(test_set) == 0:
        print("No test split: nothing scored.")
        return None
    means, rows = validate(G, task, scoring_loader(test_set, VAL_BATCH), cfg, device, cfg.norm_stats)
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
    cfg = tasks.checkpoint_config(checkpoint)
    cfg = argparse.Namespace(**dict(cfg, data=args.data or cfg["data"], test_limit=args.test_limit or cfg["test_limit"]))
    task = tasks.TASKS[cfg.task]
    cfg.norm_stats = cfg.norm_stats if args.norm_stats == "auto" else args.norm_stats
    cfg.test_dropout = args.test_dropout or cfg.test_dropout
    cfg.precision = cfg.precision if args.precision == "auto" else args.precision
    cfg.autocast, _ = utils.resolve_precision(cfg.precision, device)
    if cfg.norm_stats not in task.norm_stats_modes(vars(cfg)):
        raise SystemExit(f"error: --norm-stats {cfg.norm_stats} is not for this network: use one of "
                         f"{', '.join(task.norm_stats_modes(vars(cfg)))}")
    if cfg.data and not Path(cfg.data).exists():
        raise SystemExit(f"error: the run's data {cfg.data} is gone: give its new place with --data")
    G = tasks.build_generator(cfg.task, cfg.netG, cfg.image_size, cfg.ngf, cfg.norm, cfg.bottleneck)
    G.load_state_dict(checkpoint.get("G_ema", checkpoint["G"]))
    *_, test_set = build_datasets(cfg, task, None)
    path = Path(args.score)
    score_test_split(G.to(device), task, test_set, cfg, device, path.parent, path.name,
                     name=f"test_scores_{path.stem}_{cfg.norm_stats}_dropout-{cfg.test_dropout}")
    return 0


def export_generator(src, dst, dtype):
    """--export: the generator's weights (its average, with --ema) and the run's configuration alone, e.g.
    218 MB of colorize's 904 MB last.pt in fp32, half that in bf16 (docs/checkpoints.md); generate.py reads
    it like a full checkpoint."""
    checkpoint = utils.load_checkpoint(src)
    if not {"G", "config"} <= set(checkpoint):
        raise SystemExit(f"error: {src} is not a train.py checkpoint (no generator and configuration in it)")
    weights = checkpoint.get("G_ema", checkpoint["G"])
    G = {k: v.to(utils.DTYPES[dtype]) if v.is_floating_point() else v for k, v in weights.items()}
    utils.save_checkpoint({"format": "generator", "G": G, "config": checkpoint["config"], "dtype": dtype,
                           "params": checkpoint.get("params")}, dst)
    print(f"{dst}: the generator of {src} in {dtype}, {Path(dst).stat().st_size / 2**20:.1f} MiB "
          f"(the checkpoint: {Path(src).stat().st_size / 2**20:.1f} MiB)")
    return 0


class StopFlags:
    """Ctrl-C / SIGTERM (finish the step, save, stop; a second Ctrl-C stops at once), the --save-every
    timer and divergence. All ranks must act at the same step, so the flags are agreed by an all_reduce on
    a CPU (gloo) group: checking them never makes the host wait for the GPU."""

    def __init__(self, world, save_every_minutes):
        self.signal, self.period, self.last_save = None, save_every_minutes * 60, time.time()
        self.group = dist.new_group(backend="gloo") if world > 1 else None
        self.handlers = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(self, signum, frame):
        self.signal = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _any(self, *flags):
        flags = torch.tensor(flags, dtype=torch.int32)
        if self.group is not None:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group)
        return flags.bool().tolist()

    def agree(self, flag):
        """Whether `flag` is true on any rank."""
        return self._any(bool(flag))[0]

    def check(self, diverged):
        """-> (stop, save now, diverged), the same on every rank."""
        stop, late, diverged = self._any(self.signal is not None, time.time() - self.last_save > self.period, diverged)
        return stop, stop or late, diverged

    def restore(self):
        for s, handler in self.handlers.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------------------------------------
# The loop


def setup(args, rank, world, device):
    """The configuration, the data, the networks and optimizers (at the checkpoint's state when resuming),
    and rank 0's report (validation loader, sample batch, metrics rows)."""
    checkpoint = utils.load_checkpoint(args.resume) if args.resume else None
    cfg, splits = resolve_config(args, checkpoint)
    cfg.autocast, cfg.autocast_why = utils.resolve_precision(cfg.precision, device)  # on the machine it runs on
    task = tasks.TASKS[cfg.task]
    torch.manual_seed(cfg.seed + rank)
    train_set, val_set, test_set = build_datasets(cfg, task, splits)
    loader, sampler, shield = build_loader(train_set, cfg, world, rank, device)
    if checkpoint:
        check_resumed_schedule(checkpoint, cfg, world, len(loader))
    if cfg.val_every is None:  # every pass, and often enough that a long pass shows its progress
        cfg.val_every = min(len(loader), VAL_EVERY_MAX)
    total, decay = run_length(cfg, len(loader))
    run = build_networks(cfg, device, world, checkpoint, total, decay)
    run.__dict__.update(loader=loader, sampler=sampler, shield=shield, train_set=train_set, test_set=test_set, total=total,
                        end=min(total, cfg.stop_at or total), steps_per_epoch=len(loader))
    report = None
    if rank == 0:
        report = start_report(cfg, val_set, run.step)
        print(describe(cfg, run, train_set, val_set, world, device, checkpoint))
        if not checkpoint:
            save_samples(run.G, task, report.sample_batch, cfg, device, report.out / "samples" / "step_00000000.png")
    return cfg, task, run, report


def main(args):
    if args.export:
        return export_generator(*args.export, args.export_dtype)
    rank, world, device = utils.setup_distributed(args.device)
    if args.score:
        return score_checkpoint(args, device)
    cfg, task, run, report = setup(args, rank, world, device)
    out, end, total = Path(cfg.out), run.end, run.total
    run.stop, bce = StopFlags(world, cfg.save_every_min), F.binary_cross_entropy_with_logits
    bar = tqdm(total=total, initial=run.step, disable=rank != 0, dynamic_ncols=True, desc=cfg.task)
    losses, n = torch.zeros(3, device=device), 0
    try:
        for batch in itertools.islice(batches_from(run.loader, run.sampler, run.step, cfg.batch_size), max(0, end - run.step)):
            x, y, weight, _ = task.prepare(batch, cfg, device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with utils.autocast(device, cfg.autocast):
                fake = run.G_train(x)

            # (1) D: maximize log D(x, y) + log(1 - D(x, G(x))); the loss is halved to slow D relative to G.
            with utils.autocast(device, cfg.autocast):
                pred_real, pred_fake = run.D_train(task.d_input(x, y, cfg)), run.D_train(task.d_input(x, fake.detach(), cfg))
                loss_D = 0.5 * (bce(pred_real, torch.ones_like(pred_real)) + bce(pred_fake, torch.zeros_like(pred_fake)))
            run.opt_D.zero_grad(set_to_none=True)
            run.scaler.scale(loss_D).backward()
            run.scaler.step(run.opt_D)

            # (2) G: fool D (the non-saturating log D(x, G(x))) + lambda * reconstruction of y.
            run.D.requires_grad_(False)
            with utils.autocast(device, cfg.autocast):
                pred_fake = run.D_for_G(task.d_input(x, fake, cfg))
                loss_G_adv = bce(pred_fake, torch.ones_like(pred_fake))
            loss_G_rec = weighted_mean((fake.float() - y).abs() if cfg.rec_loss == "l1" else (fake.float() - y) ** 2, weight)
            run.opt_G.zero_grad(set_to_none=True)
            run.scaler.scale(cfg.lambda_adv * loss_G_adv + cfg.lambda_rec * loss_G_rec).backward()
            run.scaler.step(run.opt_G)
            run.scaler.update()
            run.D.requires_grad_(True)
            run.sched_G.step()
            run.sched_D.step()
            if run.ema:
                run.ema.update(run.step)

            run.step, n = run.step + 1, n + 1
            losses += torch.stack([loss_D, loss_G_adv, loss_G_rec]).detach().float()
            read = show_progress(bar, losses, n, run.step)  # the mean losses, every PROGRESS_EVERY steps
            halt, save_now, diverged = run.stop.check(read is not None and not all(map(math.isfinite, read)))
            if diverged:
                raise Diverged(f"the losses are not finite at step {run.step}")
            if save_now or run.step == end < total:
                save(run, cfg, device, world, out / "last.pt")
                run.stop.last_save = time.time()
            if run.step % cfg.val_every == 0 or run.step == total:
                evaluate(run, task, cfg, report, device, world, (losses / n).tolist(), run.train_set.skipped.value,
                         last=run.step in (end, total) or halt)
                losses, n, run.stop.last_save = torch.zeros_like(losses), 0, time.time()
            if halt:
                return log(f"\nStopped by {run.stop.signal or 'a signal on another rank'} at step {run.step}: saved "
                           f"{out / 'last.pt'} (continue with --resume {out / 'last.pt'}).")
        bar.close()
        end_of_run(run, task, cfg, device, report)
    except Diverged as e:
        raise SystemExit(f"error: training diverged: {e}. Nothing after it was saved; {resume_hint(out)}, with a "
                         f"lower --lr, or start again") from None
    except KeyboardInterrupt:  # a second Ctrl-C
        log(f"\nStopped at once by a second Ctrl-C at step {run.step}; {resume_hint(out)}.", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit as e:  # a one-line error on the way (a full disk)
        raise SystemExit(f"{e.code}\n{resume_hint(out)}." if isinstance(e.code, str) and rank == 0 else e.code) from None
    except Exception:
        log(f"\nTraining crashed at step {run.step}; {resume_hint(out)}.", file=sys.stderr)
        raise
    finally:
        run.stop.restore()
        run.shield.value = 0
        if dist.is_initialized():
            dist.destroy_process_group()


def resume_hint(out):
    """What is left to resume from in the run folder `out`."""
    last = out / "last.pt"
    if not last.exists():
        return "no checkpoint was written yet"
    return f"the last checkpoint is {last} (step {checkpoint_step(last)}): continue with --resume {last}"


def weighted_mean(err, weight):
    """Mean of err over the pixels with weight > 0, weighted; weight None is the plain mean."""
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / (weight > 0).sum().clamp_min(1)


def log(*args, **kwargs):
    """print, on rank 0 only."""
    if utils.rank() == 0:
        print(*args, **kwargs)


def describe(cfg, run, train_set, val_set, world, device, checkpoint):
    where = f"on {cfg.data}" if cfg.data else f"on the built-in procedural demo ({cfg.demo_images} images)"
    resumed = (f"\nResumed {cfg.resume} at step {run.step} (step {checkpoint['epoch_step']:,} of epoch "
               f"{checkpoint['epoch'] + 1}) in {cfg.out}.") if checkpoint else ""
    return (f"Training {cfg.task} {where}: {run.total:,} steps of {cfg.batch_size} x {world} images "
            f"({run.steps_per_epoch:,} a pass; {cfg.epochs:g} + {cfg.epochs_decay:g} of decay), validating every "
            f"{cfg.val_every:,}.\nG ({cfg.netG}): {run.params['G']:,} parameters | D ({cfg.netD}): "
            f"{run.params['D']:,} parameters | {len(train_set):,} training and {len(val_set):,} validation images | "
            f"{world} x {device}, {cfg.autocast} ({cfg.autocast_why}) | test time: {cfg.norm_stats} statistics, "
            f"dropout {cfg.test_dropout}"
            + resumed)


def show_progress(bar, losses, n, step):
    """Advance the bar; every PROGRESS_EVERY steps (on every rank: divergence is checked with them) read
    the mean losses, show them, and return them."""
    bar.update()
    if step % PROGRESS_EVERY:
        return None
    read = (losses / n).tolist()
    if not bar.disable:
        bar.set_postfix_str("D {:.3f} G_adv {:.3f} G_rec {:.4f}".format(*read))
    return read


def end_of_run(run, task, cfg, device, report):
    """At the end of the run: best.pt scored once on the test split (rank 0, which has the report)."""
    out = Path(cfg.out)
    if run.end < run.total:
        return log(f"Stopped by --stop-at {cfg.stop_at} at step {run.step}: saved {out / 'last.pt'} "
                   f"(continue with --resume {out / 'last.pt'}).")
    if report:
        best = utils.load_checkpoint(out / "best.pt", device) if (out / "best.pt").exists() else None
        G = test_generator(run)
        if best:
            G.load_state_dict(best.get("G_ema", best["G"]))
        means = score_test_split(G, task, run.test_set, cfg, device, out, "best.pt" if best else "last.pt")
        pages.run_page(out, vars(cfg), report.rows, f"Finished: {run.step:,} steps; best.pt (step "
                       f"{best['step'] if best else run.step:,}) scored on the test split.", test_scores=means)
        print(f"Done: {run.step} steps. Checkpoints in {out} (last.pt, best.pt), curves in {out / 'plot.png'}, "
              f"all of it in {out / 'index.html'}.")


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
