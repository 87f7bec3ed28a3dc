"""The data of a training run: its three splits (the procedural demo, or the images of --data that
classes.py finds) and the training loader, which can start mid-epoch so that a resumed run sees exactly
the batches an uninterrupted one would have seen.
"""
import functools
import multiprocessing
import os
import signal
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import classes
import demo
import images
import utils


def find_splits(data, task, seed):
    """{'train', 'val', 'test': image paths} of --data, as the task's raw layout or an organized tree, or a
    one-line exit."""
    if not Path(data).exists():
        raise SystemExit(f"error: --data {data} does not exist")
    try:
        return classes.find_splits(data, task.dataset, seed=seed)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")


def build_datasets(cfg, task, splits):
    """Training, validation and test sets: the procedural demo, or the files of --data (`splits`, if
    found already). The validation split must not be empty: the test split stays unseen until the end of
    the run. Unreadable images are replaced in training and left out of the scores."""
    train_tf, val_tf = task.transforms(cfg)
    if cfg.data is None:
        side = task.demo_side(cfg)
        return (demo.DemoDataset(task.draw, side, cfg.demo_images, demo.DEMO_TRAIN_ID, train_tf),
                demo.DemoDataset(task.draw, side, cfg.val_images, demo.DEMO_VAL_ID, val_tf),
                demo.DemoDataset(task.draw, side, cfg.val_images, demo.DEMO_TEST_ID, val_tf))
    splits = splits or find_splits(cfg.data, task, cfg.split_seed)
    files = {"train": splits["train"][:cfg.train_limit], "val": splits["val"][:cfg.val_limit],
             "test": splits["test"][:cfg.test_limit]}
    for split in ("train", "val"):
        if not files[split]:
            counts = ", ".join(f"{len(v):,} {k}" for k, v in files.items())
            raise SystemExit(f"error: {cfg.data} has no {split} images ({counts}); the test split is never "
                             f"used in their place")
    check_readable(files["train"], train_tf.min_side)
    # Evenly spaced, so that a by-book sorted list gives images from many books.
    files["val"] = files["val"][::max(1, len(files["val"]) // cfg.val_images)][:cfg.val_images]
    return (classes.ImageDataset(files["train"], train_tf), classes.ImageDataset(files["val"], val_tf, replace=False),
            classes.ImageDataset(files["test"], val_tf, replace=False))


def check_readable(files, min_side):
    """Exit with one line unless one of the first training images can be read: the loader replaces an
    unreadable image by the next one, and gives up after ImageDataset.MAX_TRIES in a row."""
    tried, reasons = files[:classes.ImageDataset.MAX_TRIES], []
    for path in tried:
        img, reason = images.try_load_image(path, min_side)
        if img is not None:
            return
        reasons.append(reason)
    which = f"{len(files)}" if len(tried) == len(files) else f"first {len(tried)} of the {len(files):,}"
    folder = os.path.commonpath([os.path.dirname(f) for f in tried])
    raise SystemExit(f"error: none of the {which} training images in {utils.shown(folder)} can be read "
                     f"({utils.shown(tried[0])}: {reasons[0]})")


def build_loader(train_set, cfg, world, rank, device):
    """The training loader, its sampler and the flag that shields its workers from stop signals."""
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


def scoring_loader(dataset, batch_size):
    """A loader over the readable images of a validation or test set, in order."""
    # Its own generator: a loader seeds itself from the global RNG, which would shift the dropout stream.
    return DataLoader(dataset, batch_size=batch_size, collate_fn=classes.collate_readable, generator=torch.Generator())
