"""Train Pix2Pix colorization of comic panels, or Context Encoder inpainting of faces.

    python train.py                   # colorize the built-in demo panels (about 13 minutes on a 2-core CPU)
    python train.py --task inpaint                     # inpaint the built-in demo faces
    python train.py --task colorize --data raw_panel_images          # COMICS, the paper's large-set preset
    python train.py --task inpaint --data celeba --train-limit 80000 --val-limit 2000
    python train.py --paper --data raw_panel_images    # every setting as the paper, where the defaults differ
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
"""
# The loop: flags, set-up, training steps, validation and saving. Each task is its own file, asked through
# taskbase.Task and never branched on; runfolder.py keeps the run's folder and checkpoint, data.py its data.
import itertools
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import data
import model
import pages
import runfolder
import score
import tasks
import utils

VAL_EVERY_MAX = 1000  # default validation interval: every epoch, but at least every 1000 steps
PLOT_EVERY_S = 30  # matplotlib takes about a second: redraw the curves at most this often, and at the end
SAMPLE_IMAGES = 8  # rows of the [input | output | target] grids
PROGRESS_EVERY = 10  # steps between updates of the progress bar's losses: reading them waits for the GPU


def get_parser():
    p = utils.Parser(description=__doc__, formatter_class=utils.HelpFormatter)
    count, natural, positive, nonnegative = utils.POSITIVE_INT, utils.NATURAL, utils.POSITIVE, utils.NONNEGATIVE
    by_task = tasks.default_help  # a setting's default in each task's presets
    g = p.add_argument_group("data")
    g.add_argument("--task", choices=list(tasks.TASKS), default=next(iter(tasks.TASKS)), help="what to learn")
    g.add_argument("--paper", action="store_true", help="the paper's settings wherever the defaults depart from them "
                   "(README); colorize: no --ema, --test-dropout on, --norm-stats image; inpaint: --overlap 4; both fp32")
    g.add_argument("--data", help="COMICS raw_panel_images, a CelebA folder, or an organized tree (DIR/train, "
                   "DIR/val, DIR/test) (default: the built-in procedural demo)")
    g.add_argument("--image-size", type=count, help=f"network resolution (default: {by_task('image_size')})")
    g.add_argument("--load-size", type=count, help=f"shorter side before the random crop (default: {by_task('load_size')})")
    g.add_argument("--train-limit", type=count, help="use only the first N training images (default: all)")
    g.add_argument("--val-limit", type=count, help="use only the first N validation images (default: all)")
    g.add_argument("--test-limit", type=count, help="score only the first N test images (default: all)")
    g.add_argument("--val-images", type=count, help=f"validation images scored at every validation, evenly spaced "
                   f"among those (default: {by_task('val_images')})")
    g.add_argument("--demo-images", type=count, help="training images of the built-in demo (default: "
                   + ", ".join(f"{task.name} {task.demo_preset['demo_images']}" for task in tasks.TASKS.values()) + ")")
    g = p.add_argument_group("model")
    g.add_argument("--netG", choices=list(model.MIN_SIDE), help=f"generator (default: {by_task('netG')})")
    g.add_argument("--netD", choices=["patch", "context"], help="discriminator: 70x70 PatchGAN on (input, output) "
                   f"pairs, or the Context Encoder's on the patch (default: {by_task('netD')})")
    g.add_argument("--ngf", type=count, help=f"generator base width (default: {by_task('ngf')})")
    g.add_argument("--ndf", type=count, help=f"discriminator base width (default: {by_task('ndf')})")
    g.add_argument("--norm", choices=["batch", "instance"], default="batch", help="normalization layers")
    g = p.add_argument_group("objective")
    g.add_argument("--rec-loss", choices=["l1", "l2"], help=f"reconstruction loss (default: {by_task('rec_loss')})")
    g.add_argument("--lambda-rec", "--lambda-l1", dest="lambda_rec", type=nonnegative,
                   help=f"weight of the reconstruction term (default: {by_task('lambda_rec')})")
    g.add_argument("--lambda-adv", type=nonnegative, help=f"weight of the adversarial term (default: {by_task('lambda_adv')})")
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
    g.add_argument("--lr-g-mult", type=positive, help=f"G's lr multiplier (default: {by_task('lr_g_mult')})")
    g.add_argument("--beta1", type=utils.number(float, 0, 1), default=0.5, help="Adam beta1, in [0, 1)")
    g.add_argument("--ema", type=utils.number(float, 0, 1), help="decay of an average of G's weights, which validation, "
                   f"best.pt, the test split, --export and generate.py then use; 0: none (default: {by_task('ema') or 0})")
    g.add_argument("--seed", type=int, default=0, help="random seed (under torchrun each process adds its rank)")
    g = p.add_argument_group("test time", "How validation, best.pt, the test split and (by default) generate.py run G.")
    g.add_argument("--norm-stats", choices=["auto", *model.NORM_STATS], default="auto",
                   help="BatchNorm at test time: each image's own statistics (the paper's batch-1 test) or "
                   "the running averages; auto: image when training at batch 1, else running")
    g.add_argument("--test-dropout", choices=["off", "on"], help="dropout at test time (always on in training; on in "
                   f"the paper, for stochastic outputs) (default: {by_task('test_dropout')})")
    for task in tasks.TASKS.values():  # each task's own flags, in a group of its own
        task.add_train_flags(p)
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
    g.add_argument("--channels-last", action="store_true", help="channels-last memory layout (opt-in; slower on the "
                   "CPUs measured, docs/speed.md)")
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


# ----------------------------------------------------------------------------------------------------
# Set-up: the configuration and the run folder, the data, the networks and their optimizers


def setup(args, rank, world, device):
    """The configuration, the data, the networks and optimizers (at the checkpoint's state when resuming),
    and rank 0's report (validation loader, sample batch, metrics rows)."""
    checkpoint = utils.load_checkpoint(args.resume) if args.resume else None
    if checkpoint:
        cfg, splits = runfolder.resumed_config(args, checkpoint, vars(get_parser().parse_args([]))), None
    else:
        cfg, splits = runfolder.new_run_config(args)
    tasks.refuse_other_tasks_flags(tasks.TASKS[cfg.task], args, "train_flags", "this run")
    cfg.out = runfolder.claim_folder(cfg, checkpoint)  # held by this process until it ends (runfolder.let_go)
    cfg.autocast, cfg.autocast_why = utils.resolve_precision(cfg.precision, device)  # on the machine it runs on
    task = tasks.TASKS[cfg.task]
    torch.manual_seed(cfg.seed + rank)
    train_set, val_set, test_set = data.build_datasets(cfg, task, splits)
    loader, sampler, shield = data.build_loader(train_set, cfg, world, rank, device)
    if checkpoint:
        runfolder.check_resumed_schedule(checkpoint, cfg, world, len(loader))
    if cfg.val_every is None:  # every pass, and often enough that a long pass shows its progress
        cfg.val_every = min(len(loader), VAL_EVERY_MAX)
    total, decay = run_length(cfg, len(loader))
    run = build_networks(cfg, device, world, checkpoint, total, decay)
    run.__dict__.update(loader=loader, sampler=sampler, shield=shield, train_set=train_set, test_set=test_set, total=total,
                        end=min(total, cfg.stop_at or total), steps_per_epoch=len(loader))
    report = start_report(cfg, val_set, run.step) if rank == 0 else None
    if report:
        print(describe(cfg, run, train_set, val_set, world, device, checkpoint))
        if not checkpoint:
            score.save_samples(run.G, task, report.sample_batch, cfg, device, report.out / "samples" / "step_00000000.png")
    return cfg, task, run, report


def run_length(cfg, steps_per_epoch):
    """(steps in all, steps of lr decay) of the run: --steps split as the epochs are, or the epochs. Any
    decay at all lasts a step at least, so that the lr is exactly 0 after the last step."""
    epochs = cfg.epochs + cfg.epochs_decay
    if cfg.steps:
        total, decay = cfg.steps, round(cfg.steps * cfg.epochs_decay / epochs) if epochs else 0
    else:
        total, decay = max(1, round(epochs * steps_per_epoch)), round(cfg.epochs_decay * steps_per_epoch)
    return total, min(total, max(decay, 1 if cfg.epochs_decay else 0))


def build_networks(cfg, device, world, checkpoint, total, decay):
    """G and D (the raw modules, which the checkpoint holds) and what trains them: their wrappers,
    optimizers, lr schedules and grad scaler; at the checkpoint's state when resuming."""
    G = tasks.generator_for(vars(cfg)).to(device)
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
        runfolder.restore_rng(checkpoint["rng"], device, world)
    run.G, run.D, run.G_train, run.D_train, run.D_for_G = wrap_for_training(G, D, cfg, world, device)
    run.ema = runfolder.EMA(run.G, cfg.ema) if cfg.ema else None
    if run.ema and checkpoint:
        run.ema.average.load_state_dict(checkpoint["G_ema"])
    return run


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


def judged_generator(run):
    """The generator that validation, best.pt and the test split judge: the average, if there is one."""
    return run.ema.averaged() if run.ema else run.G


# ----------------------------------------------------------------------------------------------------
# The loop


def main(args):
    if args.export:
        return runfolder.export_generator(*args.export, args.export_dtype)
    rank, world, device = utils.setup_distributed(args.device)
    if args.score:
        return score.score_checkpoint(args, device)
    with runfolder.setting_up():  # whatever stops the set-up leaves the run folder as it was
        cfg, task, run, report = setup(args, rank, world, device)
    out, end, total = Path(cfg.out), run.end, run.total
    run.stop, bce = runfolder.StopFlags(world, cfg.save_every_min), F.binary_cross_entropy_with_logits
    bar = tqdm(total=total, initial=run.step, disable=rank != 0, dynamic_ncols=True, desc=cfg.task)
    losses, n = torch.zeros(3, device=device), 0
    try:
        for batch in itertools.islice(data.batches_from(run.loader, run.sampler, run.step, cfg.batch_size),
                                      max(0, end - run.step)):
            xy = task.batch_to_xy(batch, cfg, device)
            x, y, weight = xy.x, xy.y, xy.weight
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
                log(f"\nStopped by {run.stop.signal or 'a signal on another rank'} at step {run.step}: saved "
                    f"{out / 'last.pt'} (continue with --resume {out / 'last.pt'}).")
                return run.stop.exit_status()
        bar.close()
        return end_of_run(run, task, cfg, device, report)
    except Diverged as e:
        raise SystemExit(f"error: training diverged: {e}. Nothing after it was saved; {runfolder.resume_hint(out)}, with a "
                         f"lower --lr, or start again") from None
    except KeyboardInterrupt:  # a second Ctrl-C
        log(f"\nStopped at once by a second Ctrl-C at step {run.step}; {runfolder.resume_hint(out)}.", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit as e:  # a one-line error on the way (a full disk)
        raise SystemExit(f"{e.code}\n{runfolder.resume_hint(out)}." if isinstance(e.code, str) and rank == 0 else e.code) from None
    except Exception:
        log(f"\nTraining crashed at step {run.step}; {runfolder.resume_hint(out)}.", file=sys.stderr)
        raise
    finally:
        run.stop.restore()
        run.shield.value = 0
        runfolder.let_go()
        if dist.is_initialized():
            dist.destroy_process_group()


class Diverged(Exception):
    """A loss, a score or the weights are no longer finite (NaN or infinite)."""


def weighted_mean(err, weight):
    """Mean of err over the pixels with weight > 0, weighted; weight None is the plain mean."""
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / (weight > 0).sum().clamp_min(1)


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
            f"dropout {cfg.test_dropout}" + resumed)


# ----------------------------------------------------------------------------------------------------
# Validation and saving: every --val-every steps (rank 0 validates, samples and draws), and at the end


def start_report(cfg, val_set, step):
    """Rank 0's run folder (runfolder.start_folder), validation loader, fixed sample batch and metrics rows."""
    rows = runfolder.start_folder(cfg, step)
    sample_batch = next((b for b in data.scoring_loader(val_set, SAMPLE_IMAGES) if b is not None), None)
    if sample_batch is None:
        raise SystemExit(f"error: none of the {len(val_set)} validation images can be read")
    return SimpleNamespace(out=Path(cfg.out), loader=data.scoring_loader(val_set, score.VAL_BATCH),
                           sample_batch=sample_batch, rows=rows, t0=time.time(), plotted=0.0)


def evaluate(run, task, cfg, report, device, world, losses, skipped, last):
    """Every --val-every steps: validate (rank 0; the others wait in save), draw the samples and the
    curves, save last.pt and, if the score improved, best.pt. The other test-time normalization is
    scored too, so the choice of --norm-stats rests on numbers."""
    improved, value = False, 0.0
    if report:
        G = judged_generator(run)
        metrics, _ = score.validate(G, task, report.loader, cfg, device, cfg.norm_stats)
        for other in (m for m in task.norm_stats_modes(cfg) if m != cfg.norm_stats):
            other_metrics, _ = score.validate(G, task, report.loader, cfg, device, other)
            metrics.update({f"{other}_stats_{k}": other_metrics[k] for k in (task.score, "ssim")})
        if run.ema:  # G itself beside its average, at the same step
            raw, _ = score.validate(run.G, task, report.loader, cfg, device, cfg.norm_stats)
            metrics.update({f"no_ema_{k}": raw[k] for k in (task.score, "ssim")})
        value = metrics[task.score]
    if run.stop.agree(not math.isfinite(value)):
        raise Diverged(f"the validation {task.score} at step {run.step} is {value}")
    if report:
        improved = run.best is None or value > run.best
        run.best = value if improved else run.best
        row = {"step": run.step, "epoch": f"{run.step / run.steps_per_epoch:.4g}", "lr": run.sched_D.get_last_lr()[0],
               **dict(zip(["loss_D", "loss_G_adv", "loss_G_rec"], losses)), **metrics,
               "skipped_files": skipped, "seconds": round(time.time() - report.t0, 1)}
        report.rows.append(row)
        utils.write_csv(report.out / "metrics.csv", report.rows)
        if last or time.time() - report.plotted > PLOT_EVERY_S:
            utils.plot_metrics(report.rows, report.out / "plot.png")
            report.plotted = time.time()
        score.save_samples(G, task, report.sample_batch, cfg, device, report.out / "samples" / f"step_{run.step:08d}.png")
        pages.run_page(report.out, cfg, report.rows, f"Step {run.step:,} of {run.total:,}: validated at "
                       f"{time.strftime('%Y-%m-%d %H:%M')}, {task.score} {value:.4g}.", columns=task.sample_columns(cfg))
        tqdm.write(f"step {run.step} (epoch {row['epoch']}) | D {losses[0]:.3f} G_adv {losses[1]:.3f} G_rec "
                   f"{losses[2]:.4f} | val {task.score} {value:.2f} (baseline {metrics[task.baseline]:.2f}) "
                   f"ssim {metrics['ssim']:.3f} | skipped files {skipped}")
    save(run, cfg, device, world, Path(cfg.out) / "last.pt", *([Path(cfg.out) / "best.pt"] if improved else []))


def save(run, cfg, device, world, *paths):
    """last.pt (and best.pt): runfolder.checkpoint_state. Rank 0 writes, every rank waits for it. Never
    weights that are not finite: the files keep the last good state."""
    weights = [t for net in (run.G, run.D) for t in net.state_dict().values() if t.is_floating_point()]
    if run.stop.agree(not torch.stack([torch.isfinite(t).all() for t in weights]).all().item()):
        raise Diverged(f"the weights at step {run.step} are not finite")
    state = runfolder.checkpoint_state(run, cfg, device, world)
    for path in paths if utils.rank() == 0 else []:
        utils.save_checkpoint(state, path)
    utils.barrier()


def end_of_run(run, task, cfg, device, report):
    """At the end of the run: best.pt scored once on the test split (rank 0, which has the report), which
    Ctrl-C or SIGTERM stops between two batches: --resume of last.pt then scores it -> the exit status."""
    out = Path(cfg.out)
    if run.end < run.total:
        return log(f"Stopped by --stop-at {cfg.stop_at} at step {run.step}: saved {out / 'last.pt'} "
                   f"(continue with --resume {out / 'last.pt'}).")
    if report:
        best = utils.load_checkpoint(out / "best.pt", device) if (out / "best.pt").exists() else None
        G = judged_generator(run)
        if best:
            G.load_state_dict(best.get("G_ema", best["G"]))
        means = score.score_test_split(G, task, run.test_set, cfg, device, out, "best.pt" if best else "last.pt",
                                       stop=lambda: run.stop.signal is not None)
        if run.stop.signal:
            print(f"\nStopped by {run.stop.signal} while scoring the test split: the training is done; --resume "
                  f"{out / 'last.pt'} scores it.")
            return run.stop.exit_status()
        pages.run_page(out, cfg, report.rows, f"Finished: {run.step:,} steps; best.pt (step "
                       f"{best['step'] if best else run.step:,}) scored on the test split.", test_scores=means,
                       columns=task.sample_columns(cfg))
        print(f"Done: {run.step} steps. Checkpoints in {out} (last.pt, best.pt), curves in {out / 'plot.png'}, "
              f"all of it in {out / 'index.html'}.")


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
