"""Train Pix2Pix colorization of comic panels, or Context Encoder inpainting of faces.

    python train.py                                    # colorize the built-in demo panels (~5 min, CPU)
    python train.py --task inpaint                     # inpaint the built-in demo faces (~5 min, CPU)
    python train.py --task colorize --data raw_panel_images          # COMICS, the paper's defaults
    python train.py --task inpaint --data celeba --train-limit 80000 --val-limit 2000
    torchrun --standalone --nproc_per_node=4 train.py --data raw_panel_images      # 4 GPUs
    python train.py --resume runs/colorize/last.pt     # continue exactly where a run stopped

Writes a run folder (--out): config.json, last.pt, best.pt, metrics.csv, plot.png and
samples/epoch_XXXX.png ([input | output | target] on a fixed validation batch). --batch-size is per
process: under torchrun the global batch is N times larger.
"""
import argparse
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torchvision.utils import make_grid
from tqdm import tqdm

import classes
import model
import utils

# The papers' settings (Isola et al. 2017 for colorize, Pathak et al. 2016 for inpaint), used for every
# flag left unset when --data is given.
PAPER = {
    "colorize": dict(netG="unet", netD="patch", image_size=256, load_size=286, batch_size=1, epochs=100,
                     epochs_decay=100, ngf=64, ndf=64, bottleneck=4000, rec_loss="l1", val_images=500),
    "inpaint": dict(netG="context-encoder", netD="context", image_size=128, load_size=128, batch_size=64,
                    epochs=25, epochs_decay=0, ngf=64, ndf=64, bottleneck=4000, rec_loss="l2", val_images=500),
}
# Without --data: the procedural demo, sized to finish in about 5 minutes on a 2-core CPU.
DEMO = {
    "colorize": dict(PAPER["colorize"], image_size=64, load_size=72, batch_size=4, epochs=8, epochs_decay=4,
                     ngf=32, ndf=32, val_images=64, demo_images=1000),
    "inpaint": dict(PAPER["inpaint"], image_size=64, load_size=64, batch_size=32, epochs=10, epochs_decay=5,
                    ngf=32, ndf=32, bottleneck=1000, val_images=128, demo_images=3200),
}
# Flags that may change when a run is resumed; the rest must stay as the run was started.
RESUMABLE = {"epochs", "epochs_decay", "max_steps", "device", "workers", "save_every", "val_every", "out", "val_images"}
SAMPLE_IMAGES = 8  # rows of the [input | output | target] grids
SAMPLE_MIN_SIDE = 128  # small demo images are enlarged in the grids so they can be seen


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # data
    p.add_argument("--task", choices=["colorize", "inpaint"], default="colorize", help="what to learn")
    p.add_argument("--data", help="COMICS raw_panel_images, a CelebA folder, or an organized tree "
                   "(DIR/train, DIR/val); none: the built-in procedural demo")
    p.add_argument("--out", help="run folder (default runs/<task>, or runs/<task>-N if that holds a run)")
    p.add_argument("--image-size", type=int, help="network resolution (256 colorize, 128 inpaint)")
    p.add_argument("--load-size", type=int, help="colorize: shorter side before the random crop (286)")
    p.add_argument("--val-images", type=int, help="validation images scored every epoch (500)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--val-limit", type=int, help="use only the first N validation images")
    p.add_argument("--demo-images", type=int, help="size of the procedural demo training set")
    # model
    p.add_argument("--netG", choices=["unet", "context-encoder"], help="generator (unet for colorize, "
                   "context-encoder for inpaint)")
    p.add_argument("--netD", choices=["patch", "context"], help="discriminator: 70x70 PatchGAN on "
                   "(input, output) pairs, or the Context Encoder's on the patch (default by --netG)")
    p.add_argument("--ngf", type=int, help="generator base width (64)")
    p.add_argument("--ndf", type=int, help="discriminator base width (64)")
    p.add_argument("--norm", choices=["batch", "instance"], default="batch", help="normalization layers")
    p.add_argument("--bottleneck", type=int, help="Context Encoder bottleneck channels (4000)")
    # inpainting
    p.add_argument("--fill", choices=["white", "mean", "zero"], default="white", help="colour of the hole")
    p.add_argument("--overlap", type=int, default=0, help="px of the predicted patch left visible around "
                   "the hole, weighted 10x in the loss (the paper's overlapPred: 4)")
    p.add_argument("--mask", choices=["center", "random"], default="center", help="hole position in training")
    # optimization
    p.add_argument("--epochs", type=int, help="epochs at the initial learning rate (100 colorize)")
    p.add_argument("--epochs-decay", type=int, help="then epochs of linear decay to zero (100 colorize)")
    p.add_argument("--max-steps", type=int, help="stop (and save) after this many steps in all")
    p.add_argument("--batch-size", type=int, help="images per process and step (1 colorize, 64 inpaint)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
    p.add_argument("--lr-g-mult", type=float, default=1.0, help="G's lr multiplier (the Context Encoder's "
                   "original code uses 10)")
    p.add_argument("--lambda-l1", type=float, default=100.0, help="colorize: weight of the L1 term")
    p.add_argument("--lambda-rec", type=float, default=0.999, help="inpaint: weight of the reconstruction")
    p.add_argument("--lambda-adv", type=float, help="weight of the adversarial term (1 colorize, 0.001 inpaint)")
    p.add_argument("--rec-loss", choices=["l1", "l2"], help="reconstruction loss (l1 colorize, l2 inpaint)")
    # logging
    p.add_argument("--val-every", type=int, default=1, help="validate, draw samples and curves every N epochs")
    p.add_argument("--save-every", type=float, default=15.0, help="minutes between checkpoints within an epoch")
    # system
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="training device")
    p.add_argument("--workers", type=int, help="data loading processes per GPU process")
    p.add_argument("--seed", type=int, default=0, help="random seed (each rank adds its rank)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the by-book COMICS split")
    p.add_argument("--resume", help="checkpoint to continue from (runs/<task>/last.pt)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast precision (auto: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convs on GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs (CUDA only)")
    return p


def resolve_config(args, checkpoint):
    """The run's configuration: the checkpoint's when resuming, else the flags with the unset ones taken
    from the papers' defaults (or the demo's when there is no --data)."""
    explicit = {k for k, v in vars(args).items() if v != get_parser().get_default(k)}
    if checkpoint:
        cfg = dict(checkpoint["config"])
        for k in sorted(explicit - {"resume"}):
            if k in RESUMABLE:
                cfg[k] = getattr(args, k)
            elif getattr(args, k) != cfg.get(k):
                print(f"warning: --{k.replace('_', '-')} ignored: resuming keeps the run's value {cfg.get(k)!r}")
        cfg["resume"] = args.resume
        cfg["out"] = cfg["out"] if "out" in explicit else str(Path(args.resume).parent)
        return argparse.Namespace(**cfg)
    cfg = vars(args).copy()
    defaults = (DEMO if args.data is None else PAPER)[args.task]
    for k, v in defaults.items():
        if cfg.get(k) is None:
            cfg[k] = v
    if args.netG == "unet" and args.netD is None:
        cfg["netD"] = "patch"  # the Context Encoder's discriminator judges only a patch
    if cfg["lambda_adv"] is None:
        cfg["lambda_adv"] = 1.0 if args.task == "colorize" else 0.001
    cfg["lambda_rec"] = cfg["lambda_l1"] if args.task == "colorize" else cfg["lambda_rec"]
    cfg["patch"] = cfg["image_size"] // 2  # the Context Encoder's hole: half the image side
    check_config(cfg)
    if cfg["out"] is None:
        cfg["out"] = free_run_folder(Path("runs") / (args.task + ("" if args.data else "-demo")))
    elif (Path(cfg["out"]) / "last.pt").exists():
        raise SystemExit(f"error: {cfg['out']} already holds a run: continue it with --resume "
                         f"{Path(cfg['out']) / 'last.pt'}, or choose another --out")
    return argparse.Namespace(**cfg)


def check_config(cfg):
    """Refuse impossible settings with one line, before any work is done."""
    problems = []
    if cfg["task"] == "colorize" and cfg["netG"] != "unet":
        problems.append("colorize uses --netG unet")
    if cfg["netG"] == "context-encoder" and cfg["netD"] == "patch":
        problems.append("the Context Encoder predicts a patch: use --netD context with it")
    if cfg["load_size"] < cfg["image_size"]:
        problems.append(f"--load-size {cfg['load_size']} is smaller than --image-size {cfg['image_size']}")
    if cfg["task"] == "inpaint" and not 0 <= 2 * cfg["overlap"] < cfg["patch"]:
        problems.append(f"--overlap {cfg['overlap']} leaves no hole in a {cfg['patch']} px patch")
    if cfg["netG"] == "context-encoder" and cfg["batch_size"] < 2 and cfg["norm"] == "batch":
        problems.append("the Context Encoder's 1x1 BatchNorm bottleneck needs --batch-size 2 or more")
    try:
        model.depth_for(cfg["image_size"], 4 if cfg["netG"] == "context-encoder" else 16)
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise SystemExit("error: " + "; ".join(problems))


def free_run_folder(base):
    """runs/colorize, or runs/colorize-2, -3, ... so that a new run never overwrites an old one."""
    candidate, n = base, 1
    while (candidate / "last.pt").exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return str(candidate)


def build_datasets(cfg):
    """Training and validation sets: the procedural demo, or the files of --data."""
    if cfg.task == "colorize":
        train_tf = classes.ColorizeTransform(cfg.image_size, cfg.load_size, train=True)
        val_tf = classes.ColorizeTransform(cfg.image_size, cfg.load_size, train=False)
    else:
        train_tf = classes.InpaintTransform(cfg.image_size, cfg.patch, train=True, mask=cfg.mask)
        val_tf = classes.InpaintTransform(cfg.image_size, cfg.patch, train=False)
    if cfg.data is None:
        draw = classes.draw_panel if cfg.task == "colorize" else classes.draw_face
        size = cfg.load_size if cfg.task == "colorize" else cfg.image_size
        train = classes.DemoDataset(draw, size, cfg.demo_images, classes.DEMO_TRAIN_ID, train_tf)
        return train, classes.DemoDataset(draw, size, cfg.val_images, classes.DEMO_VAL_ID, val_tf)
    splits = classes.find_splits(cfg.data, cfg.task, seed=cfg.split_seed)
    train_files = splits["train"][:cfg.train_limit]
    val_files = splits["val"][:cfg.val_limit] or splits.get("test", [])[:cfg.val_limit]
    if not train_files or not val_files:
        raise SystemExit(f"error: {cfg.data} has {len(train_files)} training and {len(val_files)} validation images")
    # Evenly spaced, so that a by-book sorted list gives images from many books.
    val_files = val_files[::max(1, len(val_files) // cfg.val_images)][:cfg.val_images]
    return classes.ImageDataset(train_files, train_tf), classes.ImageDataset(val_files, val_tf)


def prepare(batch, cfg, device):
    """A batch of uint8 images from the loader -> (x, y, weight, holes) on the device: x the condition,
    y what G must predict, weight the reconstruction weights (None: uniform), holes what inpainting
    needs to paste the prediction back (boxes, hole mask, real image)."""
    images = batch[0].to(device, non_blocking=True)
    if cfg.task == "colorize":
        x, y = utils.colorize_pair(images)
        weight, holes = None, None
    else:
        boxes = batch[1]  # (B, 2) on the CPU: crops and pastes read them without a GPU sync
        x, y, weight, hole, real = utils.inpaint_pair(images, boxes, cfg.patch, cfg.overlap, cfg.fill, cfg.netG)
        holes = boxes, hole, real
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y, weight, holes


def d_input(x, image, cfg):
    """What D judges: the pair (condition, image) for the PatchGAN, the patch alone for the Context
    Encoder's D. For U-Net inpainting D sees the predicted hole in its real surroundings."""
    if cfg.netD == "context":
        return image
    if cfg.task == "inpaint":
        hole = x[:, 3:]
        image = x[:, :3] * (1 - hole) + image * hole
    return torch.cat([x, image], dim=1)


def to_pictures(x, fake, y, holes, cfg):
    """(input, output, target) as RGB in [0, 1] for metrics and sample grids."""
    if cfg.task == "colorize":
        return utils.colorize_rgb(x, torch.zeros_like(y)), utils.colorize_rgb(x, fake), utils.colorize_rgb(x, y)
    boxes, hole, real = holes
    repaired = utils.inpaint_output(x, fake, boxes, hole, cfg.netG)
    return (x[:, :3] + 1) / 2, (repaired + 1) / 2, (real + 1) / 2


@torch.no_grad()
def validate(G, loader, cfg, device):
    """Scores on the validation images, next to the baselines that need no network: the gray panel
    (colorize); the white fill and the hole filled with the mean colour of its border (inpaint)."""
    G.eval()  # generation uses eval mode (BatchNorm running statistics, no dropout): see README
    sums, count = {}, 0
    for batch in loader:
        x, y, _, holes = prepare(batch, cfg, device)
        with utils.autocast(device, cfg.precision):
            fake = G(x).float()
        inp, out, target = to_pictures(x, fake, y, holes, cfg)
        if cfg.task == "colorize":
            scores = {"psnr": utils.psnr(out, target), "ssim": utils.ssim(out, target),
                      "baseline_gray_psnr": utils.psnr(inp, target), "baseline_gray_ssim": utils.ssim(inp, target)}
        else:
            boxes, hole, real = holes
            border = utils.box_mask(boxes.to(device), cfg.image_size, cfg.patch, cfg.overlap - 2) - hole  # 2 px ring
            mean = (inp * border).sum((2, 3), keepdim=True) / border.sum((2, 3), keepdim=True)
            candidates = {"": out, "baseline_white_": inp, "baseline_mean_": inp * (1 - hole) + mean * hole}
            scores = {}
            for prefix, image in candidates.items():
                hole_box, hole_side = boxes + cfg.overlap, cfg.patch - 2 * cfg.overlap
                a, b = utils.crop_patches(image, hole_box, hole_side), utils.crop_patches(target, hole_box, hole_side)
                scores.update({f"{prefix}hole_psnr": utils.psnr(a, b), f"{prefix}hole_ssim": utils.ssim(a, b),
                               f"{prefix}hole_l1": utils.l1(a, b), f"{prefix}psnr": utils.psnr(image, target),
                               f"{prefix}ssim": utils.ssim(image, target), f"{prefix}l1": utils.l1(image, target)})
        for k, v in scores.items():
            sums[k] = sums.get(k, 0.0) + v.sum().item()
        count += len(x)
    G.train()
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def save_samples(G, batch, cfg, device, path):
    """The fixed validation batch as rows of [input | output | target]."""
    G.eval()
    x, y, _, holes = prepare(batch, cfg, device)
    with utils.autocast(device, cfg.precision):
        fake = G(x).float()
    G.train()
    pictures = torch.stack(to_pictures(x, fake, y, holes, cfg), dim=1).flatten(0, 1)  # (3B, 3, S, S)
    if cfg.image_size < SAMPLE_MIN_SIDE:
        pictures = F.interpolate(pictures, scale_factor=SAMPLE_MIN_SIDE // cfg.image_size, mode="nearest")
    utils.save_png(make_grid(pictures, nrow=3, padding=2, pad_value=1.0), path)


def wrap_for_training(G, D, cfg, world, device):
    """The modules that train: SyncBatchNorm, channels-last, DDP and torch.compile around the raw G and D
    (which are what the checkpoint holds). D_frozen is D in the G step, where no gradient of D is wanted:
    the raw module, so that DDP does not wait for gradients that never come."""
    if cfg.sync_bn:
        if device.type != "cuda":
            raise SystemExit("error: --sync-bn needs CUDA (SyncBatchNorm has no CPU kernels)")
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    if cfg.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_train, D_train, D_frozen = G, D, D
    if world > 1:
        G_train, D_train = DDP(G), DDP(D)
    if cfg.compile:
        G_train, D_train, D_frozen = torch.compile(G_train), torch.compile(D_train), torch.compile(D)
    return G, D, G_train, D_train, D_frozen


def train_step(G_train, D_train, D_frozen, D, opt_G, opt_D, scaler, x, y, weight, cfg, device):
    """One optimization step of both networks; returns (loss_D, loss_G_adv, loss_G_rec), detached."""
    bce = F.binary_cross_entropy_with_logits
    with utils.autocast(device, cfg.precision):
        fake = G_train(x)

    # (1) D: maximize log D(x, y) + log(1 - D(x, G(x))); the loss is halved to slow D relative to G.
    with utils.autocast(device, cfg.precision):
        pred_real = D_train(d_input(x, y, cfg))
        pred_fake = D_train(d_input(x, fake.detach(), cfg))
        loss_D = 0.5 * (bce(pred_real, torch.ones_like(pred_real)) + bce(pred_fake, torch.zeros_like(pred_fake)))
    opt_D.zero_grad(set_to_none=True)
    scaler.scale(loss_D).backward()
    scaler.step(opt_D)

    # (2) G: fool D (the non-saturating log D(x, G(x))) + lambda * reconstruction of y.
    D.requires_grad_(False)
    with utils.autocast(device, cfg.precision):
        pred_fake = D_frozen(d_input(x, fake, cfg))
        loss_G_adv = bce(pred_fake, torch.ones_like(pred_fake))
    err = (fake.float() - y).abs() if cfg.rec_loss == "l1" else (fake.float() - y) ** 2
    loss_G_rec = utils.weighted_mean(err, weight)
    loss_G = cfg.lambda_adv * loss_G_adv + cfg.lambda_rec * loss_G_rec
    opt_G.zero_grad(set_to_none=True)
    scaler.scale(loss_G).backward()
    scaler.step(opt_G)
    scaler.update()
    D.requires_grad_(True)
    return torch.stack([loss_D, loss_G_adv, loss_G_rec]).detach().float()


def rng_states(device, world):
    """Every rank's RNG states (dropout, and the order of the data), gathered for the checkpoint."""
    state = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


def worker_init(_):
    # Ctrl-C goes to the whole process group: the main process saves a checkpoint and then stops the
    # workers itself; a worker dying first would turn a clean stop into a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(args):
    rank, world, device = utils.setup_distributed(args.device)
    checkpoint = utils.load_checkpoint(args.resume) if args.resume else None
    cfg = resolve_config(args, checkpoint)
    cfg.precision = utils.resolve_precision(cfg.precision, device)
    log = print if rank == 0 else (lambda *a, **k: None)
    if cfg.data is None:
        log(f"No --data given: training {cfg.task} on the built-in procedural demo dataset "
            f"({cfg.demo_images} images at {cfg.image_size}x{cfg.image_size}, {cfg.epochs + cfg.epochs_decay} epochs).")
    else:
        log(f"Training {cfg.task} on {cfg.data}.")
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed + rank)

    train_set, val_set = build_datasets(cfg)
    G = model.build_generator(cfg.task, cfg.netG, cfg.image_size, cfg.ngf, cfg.norm, cfg.bottleneck).to(device)
    D = model.build_discriminator(cfg.task, cfg.netG, cfg.netD, cfg.image_size, cfg.ndf, cfg.norm).to(device)
    params = {"G": model.num_params(G), "D": model.num_params(D)}
    log(f"G ({cfg.netG}): {params['G']:,} parameters | D ({cfg.netD}): {params['D']:,} parameters | "
        f"{len(train_set):,} training and {len(val_set):,} validation images | {world} x {device}, {cfg.precision}")
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr * cfg.lr_g_mult, betas=(cfg.beta1, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))

    def lr_factor(epoch):  # constant for `epochs`, then linear decay to zero over `epochs_decay`
        return 1.0 - max(0, epoch + 1 - cfg.epochs) / (cfg.epochs_decay + 1)

    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, lr_factor)
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, lr_factor)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    epoch, epoch_step, step, best = 0, 0, 0, None
    if checkpoint:
        G.load_state_dict(checkpoint["G"])
        D.load_state_dict(checkpoint["D"])
        for obj, key in [(opt_G, "opt_G"), (opt_D, "opt_D"), (sched_G, "sched_G"), (sched_D, "sched_D"), (scaler, "scaler")]:
            obj.load_state_dict(checkpoint[key])
        epoch, epoch_step, step, best = checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["step"], checkpoint["best"]
        if len(checkpoint["rng"]) == world:
            torch.set_rng_state(checkpoint["rng"][rank]["cpu"])
            if device.type == "cuda" and len(checkpoint["rng"][rank]["cuda"]):
                torch.cuda.set_rng_state(checkpoint["rng"][rank]["cuda"], device)
        else:
            log(f"warning: the run had {len(checkpoint['rng'])} processes, now {world}: the random streams restart")
        log(f"Resumed {args.resume} at epoch {epoch + 1}, step {step}.")

    G, D, G_train, D_train, D_frozen = wrap_for_training(G, D, cfg, world, device)

    workers = cfg.workers if cfg.workers is not None else min(8, max(1, (os.cpu_count() or 2) // world - 1))
    # Loaders get their own generator: our jitter has per-sample seeds, and drawing worker seeds from the
    # global RNG would shift the dropout stream of a resumed run.
    loader_args = dict(batch_size=cfg.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                       persistent_workers=workers > 0, worker_init_fn=worker_init, generator=torch.Generator())
    sampler = classes.ResumableSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(train_set, sampler=sampler, drop_last=cfg.batch_size > 1, **loader_args)
    if rank == 0:  # validation runs on rank 0 only; the other ranks wait at the barrier in save()
        val_loader = DataLoader(val_set, **loader_args)
        sample_batch = next(iter(DataLoader(val_set, batch_size=SAMPLE_IMAGES, generator=torch.Generator())))
    if len(loader) == 0:
        raise SystemExit(f"error: {len(train_set)} training images make no batch of {cfg.batch_size} per process")

    if rank == 0:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(vars(cfg), indent=2))
        if not checkpoint:
            save_samples(G, sample_batch, cfg, device, out / "samples" / "epoch_0000.png")
        rows = [r for r in utils.read_csv(out / "metrics.csv") if int(r["epoch"]) <= epoch]
        utils.write_csv(out / "metrics.csv", rows)  # a resumed run drops the rows written after its checkpoint

    def save(*paths):
        """last.pt (and best.pt): everything needed to resume exactly, or to generate."""
        state = {"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                 "sched_G": sched_G.state_dict(), "sched_D": sched_D.state_dict(), "scaler": scaler.state_dict(),
                 "epoch": epoch, "epoch_step": epoch_step, "step": step, "best": best,
                 "rng": rng_states(device, world), "config": vars(cfg), "params": params}
        for path in paths if rank == 0 else []:
            utils.save_checkpoint(state, path)
        utils.barrier()

    # Ctrl-C / SIGTERM: finish the current step, save, stop. A second Ctrl-C stops at once.
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    last_save, total_epochs = time.time(), cfg.epochs + cfg.epochs_decay
    try:
        while epoch < total_epochs and (cfg.max_steps is None or step < cfg.max_steps):
            sampler.set_epoch(epoch, start=epoch_step * cfg.batch_size)
            sums, n, t0 = torch.zeros(3, device=device), 0, time.time()
            bar = tqdm(loader, total=epoch_step + len(loader), initial=epoch_step, desc=f"epoch {epoch + 1}/{total_epochs}",
                       disable=rank != 0, dynamic_ncols=True, leave=False)
            for batch in bar:
                x, y, weight, _ = prepare(batch, cfg, device)
                losses = train_step(G_train, D_train, D_frozen, D, opt_G, opt_D, scaler, x, y, weight, cfg, device)
                step, epoch_step, n = step + 1, epoch_step + 1, n + 1
                sums += losses
                if rank == 0 and step % 10 == 0:
                    d, adv, rec = (sums / n).tolist()
                    bar.set_postfix_str(f"D {d:.3f} G_adv {adv:.3f} G_rec {rec:.4f}")
                # All ranks must agree to stop or save at the same step (a collective follows).
                # On the CPU unless ranks must agree: reading a CUDA tensor would wait for the GPU every step.
                flags = torch.tensor([stop["signal"] is not None, time.time() - last_save > cfg.save_every * 60,
                                      cfg.max_steps is not None and step >= cfg.max_steps], dtype=torch.float32,
                                     device=device if world > 1 else "cpu")
                if world > 1:
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                if flags.any():
                    save(out / "last.pt")
                    last_save = time.time()
                    if flags[0] or flags[2]:
                        bar.close()
                        why = f"{stop['signal'] or 'a signal on another rank'}" if flags[0] else f"--max-steps {cfg.max_steps}"
                        log(f"Stopped by {why} at epoch {epoch + 1}, step {step}: saved {out / 'last.pt'} "
                            f"(continue with --resume {out / 'last.pt'}).")
                        return
            bar.close()

            # End of epoch: decay the lr, validate (rank 0 only; the others wait at the barrier in
            # save()), draw the samples and the curves, save.
            with warnings.catch_warnings():
                # A run resumed after the epoch's last step reaches here without an optimizer step in
                # this process; the schedule is per epoch, so torch's order warning does not apply.
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                sched_G.step()
                sched_D.step()
            epoch, epoch_step = epoch + 1, 0
            improved = False
            if rank == 0 and (epoch % cfg.val_every == 0 or epoch in (1, total_epochs)):
                metrics = validate(G, val_loader, cfg, device)
                score = metrics["psnr" if cfg.task == "colorize" else "hole_psnr"]
                improved = best is None or score > best
                best = score if improved else best
                losses = dict(zip(["loss_D", "loss_G_adv", "loss_G_rec"], (sums / n if n else torch.full_like(sums, float("nan"))).tolist()))
                row = {"epoch": epoch, "step": step, "lr": sched_G.get_last_lr()[0], **losses, **metrics,
                       "skipped_files": train_set.skipped.value, "seconds": round(time.time() - t0, 1)}
                rows.append(row)
                utils.append_csv(out / "metrics.csv", row)
                utils.plot_metrics(rows, out / "plot.png")
                save_samples(G, sample_batch, cfg, device, out / "samples" / f"epoch_{epoch:04d}.png")
                baseline = "baseline_gray_psnr" if cfg.task == "colorize" else "baseline_mean_hole_psnr"
                print(f"epoch {epoch}/{total_epochs} step {step} | D {losses['loss_D']:.3f} G_adv {losses['loss_G_adv']:.3f} "
                      f"G_rec {losses['loss_G_rec']:.4f} | val {'psnr' if cfg.task == 'colorize' else 'hole psnr'} "
                      f"{score:.2f} dB (baseline {metrics[baseline]:.2f}) ssim {metrics['ssim']:.3f} | "
                      f"{row['seconds']:.0f} s | skipped files {row['skipped_files']}", flush=True)
            save(out / "last.pt", *([out / "best.pt"] if rank == 0 and improved else []))
            last_save = time.time()
        log(f"Done: {step} steps. Checkpoints in {out} (last.pt, best.pt), curves in {out / 'plot.png'}.")
    except Exception:
        log(f"Training crashed at epoch {epoch + 1}, step {step}; the last checkpoint is {out / 'last.pt'} "
            f"(continue with --resume).", file=sys.stderr)
        raise
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(get_parser().parse_args())
