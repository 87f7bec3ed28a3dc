"""The task table, and the generator of any checkpoint file.

A task is one file (colorize.py, inpaint.py) holding everything that makes it what it is, in an object
that keeps the contract of taskbase.Task; train.py, generate.py and the benchmarks ask that object and
never branch on its name. Adding a third task means adding its file and one line in TASKS.
"""
from pathlib import Path

import torch

import colorize
import inpaint
import model
import official
import taskbase
import utils

TASKS = {task.name: task for task in (colorize.TASK, inpaint.TASK)}
GENERATOR_KEYS = ("task", "netG", "image_size", "ngf", "norm", "bottleneck")  # what builds G, in a checkpoint's config


def default_help(key):
    """A setting's default in each task's presets, for --help: 'colorize 1 (200k+ images 4, demo 4), inpaint
    64 (demo 32)'."""
    return ", ".join(f"{task.name} {shown}" for task in TASKS.values() if (shown := task.preset_help(key)))


def refuse_other_tasks_flags(task, args, kind, what):
    """Exit with one line if args (train.py's or generate.py's) set a flag of another task than `task` (kind:
    "train_flags" or "generate_flags") whose setting `task` does not have, which would do nothing for `what`
    ("this run", "the checkpoint"): --hints for inpaint, --overlap for colorize. A setting that both have
    (--bottleneck, in every checkpoint's configuration) is allowed."""
    given = []
    for other in TASKS.values():
        for flag, keywords in getattr(other, kind)().items():
            dest = taskbase.flag_dest(flag)
            default = keywords.get("default", False if keywords.get("action") == "store_true" else None)
            if other is not task and dest not in task.paper and getattr(args, dest, default) != default:
                given.append(f"{flag} is for --task {other.name}")
    if given:
        raise SystemExit(f"error: {'; '.join(given)}, and {what} is --task {task.name}")


def build_generator(task, netG, image_size, ngf=64, norm="batch", bottleneck=4000, **options):
    """G of a task: its channels come from the task (and its generator_options), its layers from model.py."""
    in_ch, out_ch = TASKS[task].channels(netG, **options)
    return model.build_generator(netG, in_ch, out_ch, image_size, ngf, norm, bottleneck)


def generator_for(cfg):
    """G as a run's configuration (a dict) describes it."""
    return build_generator(*(cfg[k] for k in GENERATOR_KEYS), **TASKS[cfg["task"]].generator_options(cfg))


def build_discriminator(task, netG, netD, image_size, ndf=64, norm="batch"):
    in_ch, out_ch = TASKS[task].channels(netG)  # D judges pairs of the plain x (Task.channels)
    return model.build_discriminator(netD, in_ch, out_ch, image_size, ndf, norm)


# Settings that train.py's configuration held under other names, so that older checkpoints load and resume.
RENAMED = {"dropout": "test_dropout", "mask": "hole_position", "save_every": "save_every_min", "max_steps": "stop_at"}


def checkpoint_config(checkpoint):
    """A checkpoint's configuration, every setting under its present name."""
    cfg = {RENAMED.get(k, k): v for k, v in checkpoint["config"].items()}
    if "val_limit" in cfg and "test_limit" not in cfg:
        cfg["test_limit"] = cfg["val_limit"]  # one limit cut both splits
    return cfg


def _load_ours(checkpoint):
    cfg = checkpoint_config(checkpoint)
    if any(k not in cfg for k in GENERATOR_KEYS):
        raise ValueError(f"the checkpoint's config lacks {', '.join(k for k in GENERATOR_KEYS if k not in cfg)}")
    try:
        with torch.device("meta"):  # no time spent on a random init that the weights overwrite
            G = generator_for(cfg)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"the checkpoint's config describes no generator ({e!r})") from None
    return utils.assign_weights(G, checkpoint.get("G_ema", checkpoint["G"])), cfg  # the average of G, if there is one


def load_generator(path, overrides=None):
    """Any generator file -> (G in eval mode on the CPU, config): a train.py checkpoint, an exported
    generator ({"G", "config", "format": "generator"}, maybe in bf16/fp16), or an official pix2pix
    colorization state_dict (latest_net_G.pth), whose options come from the train_opt.txt beside it
    and then `overrides` (e.g. {"netG": "unet_256", "ngf": 64, "norm": "batch", "no_dropout": True}).
    Only the generator's tensors are read (memory-mapped). Raises ValueError with one line naming the
    file for anything else, and for weights that are not finite (a run that diverged)."""
    path = Path(path)
    try:
        checkpoint = utils.read_weights(path)
        if isinstance(checkpoint, dict) and "G" in checkpoint and "config" in checkpoint:
            G, cfg = _load_ours(checkpoint)
        elif official.is_official(checkpoint):
            opts = official.read_train_opt(path.parent / "train_opt.txt") if (path.parent / "train_opt.txt").is_file() else {}
            G, cfg = official.load(checkpoint, {**opts, **(overrides or {})})
        else:
            raise ValueError("neither a train.py checkpoint nor an official pix2pix U-Net state_dict")
        if not all(torch.isfinite(t).all() for t in G.state_dict().values() if t.is_floating_point()):
            raise ValueError("the generator's weights are not all finite (NaN or infinite: its run diverged); "
                             "use an earlier checkpoint")
        return G, cfg
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
