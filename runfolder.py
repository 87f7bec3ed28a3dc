"""A training run's folder and state: the run's configuration (the flags, the task's presets, a resumed
run's own settings), which folder a run may write into and its claim on it, the checkpoint (what it
holds, the RNG states in it, the checks that a resumed run goes on as it was, and --export, its generator
alone), the average of G's weights that it keeps, and the flags that decide when a train.py command saves
and stops.

A folder holding any of RUN_FILES belongs to that run: a new run never writes into it, and a resumed
run goes on only in its own folder or in a new one. A process writes into a run folder only while it
holds the folder's lock (Claim), so two runs started at the same moment never share one; a run that
stops before its first checkpoint leaves its folder as it found it (let_go).
"""
import argparse
import contextlib
import copy
import itertools
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

import data
import model
import tasks
import utils

try:
    import fcntl
except ImportError:  # Windows: there the lock file's existence is the lock (Claim)
    fcntl = None

# Flags that may change when a run is resumed; the others would change the networks, the objective or
# the order of the data, and are refused (--batch-size may change with the number of processes, if the
# images per step stay the same: check_resumed_schedule).
RESUMABLE = {"steps", "epochs", "epochs_decay", "stop_at", "device", "workers", "save_every_min", "val_every", "out",
             "val_images", "test_limit", "data", "precision", "compile", "channels_last", "sync_bn", "batch_size"}
# Everything a run writes into its folder: a folder holding any of it belongs to that run.
RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.csv", "plot.png", "samples", "test_scores.csv",
             "test_scores.json")
CHECKPOINTS = ("last.pt", "best.pt")
LOCK = ".lock"  # in a run folder while a process holds it: "PID HOST" of that process
EDITED = "config.json.edited"  # a config.json that differed from the resumed checkpoint's, kept aside


# ----------------------------------------------------------------------------------------------------
# The configuration


def new_run_config(args):
    """A new run's configuration: the flags, with the unset ones taken from the task's preset for its
    training set (task.preset) -> (cfg, the splits of --data or None)."""
    task = tasks.TASKS[args.task]
    splits = data.find_splits(args.data, task, args.split_seed) if args.data else None
    preset = task.preset(len(splits["train"][:args.train_limit]) if splits else None, args.paper)
    cfg = argparse.Namespace(**vars(args))
    for k, v in preset.items():
        if getattr(cfg, k, None) in (None, "auto"):
            setattr(cfg, k, v)
    for k, v in task.defaults(cfg).items():
        if getattr(cfg, k, None) in (None, "auto"):
            setattr(cfg, k, v)
    cfg.test_dropout, cfg.ema = cfg.test_dropout or "off", cfg.ema or 0.0
    check_config(cfg, task)
    if cfg.out is not None:  # refused before any work; the default folder is chosen by claim_folder
        check_new_folder(Path(cfg.out))
    return cfg, splits


def resumed_config(args, checkpoint, defaults):
    """A resumed run's configuration: the checkpoint's, with the flags that may change; settings that the
    run's train.py did not have yet take their `defaults` (the parser's), and --stop-at is for this command alone."""
    if checkpoint.get("format") == "generator":
        raise SystemExit(f"error: {args.resume} is a generator exported with --export, which keeps no training "
                         f"state: resume its run's last.pt instead")
    lacking = [k for k in ("config", "G", "D", "opt_G", "opt_D", "rng", "step") if k not in checkpoint]
    if lacking:
        raise SystemExit(f"error: {args.resume} is not a train.py checkpoint (no {', '.join(lacking)} in it): "
                         f"resume a run's last.pt")
    explicit = {k for k, v in vars(args).items() if v != defaults[k]} - {"resume", "score"}
    cfg = {**defaults, **tasks.checkpoint_config(checkpoint), "stop_at": None}
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
    return argparse.Namespace(**cfg)


def check_config(cfg, task):
    """Refuse impossible settings with one line, before any work is done."""
    problems = task.problems(cfg)
    if cfg.load_size < cfg.image_size:
        problems.append(f"--load-size {cfg.load_size} is smaller than --image-size {cfg.image_size}")
    if cfg.epochs + cfg.epochs_decay == 0:
        problems.append("--epochs 0 and --epochs-decay 0 leave the run no step")
    try:
        model.check_image_size(cfg.netG, cfg.image_size)
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise SystemExit("error: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------------
# The folder


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


def claim_free_folder(base):
    """The first of runs/colorize, runs/colorize-2, -3, ... that holds no run and that no other process
    holds, claimed -> its Claim. A new run never overwrites an old one, nor shares a folder with a run
    started at the same moment."""
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if candidate.is_file() or holds_run(candidate):
            continue
        claim = Claim.take(candidate)
        if claim and claim.fresh:
            return claim
        if claim:  # a run was written there between the look and the claim
            claim.release()


def resume_folder(args, checkpoint):
    """Where a resumed run goes on: the checkpoint's own folder, unless a newer checkpoint there would be
    overwritten (then --out must name a new folder), or --out, which must not hold another run. A new
    folder starts with the run's metrics up to the checkpoint's step (start_folder)."""
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


def start_folder(cfg, step):
    """The run folder as a train.py command starts: config.json, the samples folder, and metrics.csv with the
    run's rows up to `step` (a resumed run drops the rows written after its checkpoint), from the
    checkpoint's own folder when it goes on in a new one -> those rows."""
    out = Path(cfg.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    utils.write_json(out / "config.json", vars(cfg))
    history = Path(cfg.resume).parent if cfg.resume else out
    rows = [r for r in utils.read_csv(history / "metrics.csv") if int(r["step"]) <= step]
    utils.write_csv(out / "metrics.csv", rows)
    return rows


def keep_edited_config(out, saved, resume):
    """A resumed run's config.json that differs from its checkpoint's configuration (edited by hand, say)
    would change nothing and be overwritten: say which settings differ and keep the file aside."""
    path, saved = out / "config.json", json.loads(json.dumps(saved))  # as JSON has it: tuples are lists
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except ValueError:  # not JSON any more (UnicodeDecodeError is one)
        found = None
    differ = "it holds no settings that JSON can read"
    if isinstance(found, dict):
        keys = sorted(k for k in found.keys() | saved.keys() if found.get(k) != saved.get(k) and k != "resume")
        if not keys:
            return
        shown = {k: [json.dumps(c[k]) if k in c else "none" for c in (found, saved)] for k in keys}
        differ = "; ".join(f"{k} {a} in the file, {b} in the checkpoint" for k, (a, b) in shown.items())
        flags = [f"--{k.replace('_', '-')}" for k in keys if k in RESUMABLE]
        differ += f". Change {', '.join(flags)} on the command line instead" if flags else ""
    os.replace(path, out / EDITED)
    print(f"warning: {path} differs from the configuration of {resume}, which is used ({differ}); the file is kept "
          f"as {out / EDITED}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------
# The claim on the folder


class Claim:
    """This process's hold on a run folder: an exclusive lock (flock) on the folder's LOCK file, which
    names the holder. The system drops the lock when the process ends in any way, kill -9 included (its
    data-loader workers, which share it, end within seconds of it), so two runs never write into one
    folder and a dead run's folder is free again. Without fcntl (Windows)
    the lock is the file's existence, which a killed process leaves behind. `created`: this process made
    the folder; `fresh`: the folder held no run when claimed (a new run, or one resumed into a new
    folder), so the run files in it are this process's (abandon)."""

    def __init__(self, folder, fd, created):
        self.folder, self.fd, self.created, self.fresh = folder, fd, created, not holds_run(folder)

    @classmethod
    def take(cls, folder):
        """Claim `folder`, made if need be -> the Claim, or None if another process holds it."""
        folder, lock = Path(folder), Path(folder) / LOCK
        created = make_folder(folder)
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o666)
            except FileExistsError:  # without fcntl
                return None
            except FileNotFoundError:  # the folder was removed by a run that gave it up: make it again
                created = make_folder(folder) or created
                continue
            except OSError as e:  # a read-only disk, no permission
                raise SystemExit(f"error: cannot write into the run folder {folder}: "
                                 f"{e.strerror or utils.one_line(e)}") from None
            if fcntl:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return None
                if not same_file(fd, lock):  # its holder removed it between our open and our lock: again
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)  # a killed holder's name may be in it
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            return cls(folder, fd, created)

    def release(self):
        # With flock the file goes while still locked, so that no process ever holds a lock on a removed
        # file; without, the file is the lock, and Windows removes no open file.
        if fcntl:
            (self.folder / LOCK).unlink(missing_ok=True)
        os.close(self.fd)
        if not fcntl:
            (self.folder / LOCK).unlink(missing_ok=True)

    def abandon(self):
        """Leave the folder as it was found: the run's files go (if it held no run before), then the lock,
        then the folder if this process made it and nothing else is in it."""
        for name in (*RUN_FILES, "index.html") if self.fresh else ():
            path = self.folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        self.release()
        if self.created:
            with contextlib.suppress(OSError):  # not empty, or made again by another run meanwhile
                self.folder.rmdir()


def make_folder(folder):
    """Make a run folder -> whether this made it (False: it was there), or exit with one line."""
    try:
        folder.mkdir(parents=True)
        return True
    except FileExistsError:
        if folder.is_dir():
            return False
        if folder.is_symlink():
            raise SystemExit(f"error: --out {folder} links to {os.readlink(folder)}, which does not exist") from None
        raise SystemExit(f"error: --out {folder} is a file, not a folder") from None
    except OSError as e:  # a read-only disk, a path through a file, no permission
        raise SystemExit(f"error: cannot make the run folder {folder}: {e.strerror or utils.one_line(e)}") from None


def same_file(fd, path):
    """Whether the open file fd is still the file at path."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def lock_holder(folder):
    """'process PID on HOST' that holds the folder, as its LOCK file says."""
    try:
        pid, host = (Path(folder) / LOCK).read_text().split()
    except (OSError, ValueError):  # gone, or not written yet
        return "another process"
    return f"process {pid} on {host}"


held = None  # the Claim of this process's run folder, from claim_folder to let_go


def claim_folder(cfg, checkpoint):
    """Rank 0 claims the run's folder (Claim), and the other ranks follow its choice: --out, or the first
    free runs/<task>, -2, -3, ... (claim_free_folder). A resumed run in its own folder first checks that
    its config.json is the checkpoint's (keep_edited_config) -> the folder."""
    global held
    choice = [None]
    try:
        if utils.rank() == 0 and cfg.out is None:
            held = claim_free_folder(Path("runs") / (cfg.task + ("" if cfg.data else "-demo")))
        elif utils.rank() == 0:
            out = Path(cfg.out)
            own = bool(checkpoint) and out.resolve() == Path(cfg.resume).parent.resolve()
            claim = Claim.take(out)
            if claim is None:
                raise SystemExit(f"error: {out} is in use by {lock_holder(out)}, which runs train.py there: "
                                 + (f"resume {cfg.resume} once it ends" if own else "choose another --out")
                                 + ("" if fcntl else f" (if it no longer runs, remove {out / LOCK})"))
            held = claim
            if own:
                keep_edited_config(out, checkpoint["config"], cfg.resume)
            elif not claim.fresh:  # a run was written there between the look and the claim
                check_new_folder(out)
        choice[0] = held and str(held.folder)
    finally:  # the other ranks wait for rank 0's folder, or for None: it stopped and says why
        if dist.is_initialized():
            dist.broadcast_object_list(choice, src=0)
    if choice[0] is None:
        raise SystemExit(1)
    return choice[0]


def let_go():
    """At the end of train.py: release the run folder. One that held no run before and got no checkpoint
    (a set-up or a first step that failed, Ctrl-C in set-up) is left as found (Claim.abandon), so that the
    same command starts again in the same folder."""
    global held
    if held and held.fresh and not (held.folder / "last.pt").exists():
        held.abandon()
    elif held:
        held.release()
    held = None


@contextlib.contextmanager
def setting_up():
    """Around a run's set-up: whatever stops it leaves the run folder as it was (let_go); Ctrl-C with one
    line and the status of a process that SIGINT stopped."""
    try:
        yield
    except KeyboardInterrupt:
        let_go()
        if utils.rank() == 0:
            print("\nStopped by Ctrl-C during set-up, before any step: nothing was written.", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    except BaseException:
        let_go()
        raise


# ----------------------------------------------------------------------------------------------------
# The checkpoint


def checkpoint_state(run, cfg, device, world):
    """Everything needed to resume exactly, or to generate: the raw networks, their optimizers, schedules
    and grad scaler, the step and its place in the epoch, every rank's RNG states and the configuration."""
    steps_per_epoch = run.steps_per_epoch
    state = {"G": run.G.state_dict(), "D": run.D.state_dict(), "opt_G": run.opt_G.state_dict(),
             "opt_D": run.opt_D.state_dict(), "sched_G": run.sched_G.state_dict(), "sched_D": run.sched_D.state_dict(),
             "scaler": run.scaler.state_dict(), "step": run.step, "epoch": run.step // steps_per_epoch,
             "epoch_step": run.step % steps_per_epoch, "steps_per_epoch": steps_per_epoch, "world": world,
             "best": run.best, "rng": rng_states(device, world), "config": vars(cfg), "params": run.params}
    if run.ema:
        state["G_ema"] = run.ema.averaged().state_dict()
    return state


def checkpoint_step(path):
    """The step of a checkpoint file, reading nothing else of it (-1 if it cannot be read)."""
    try:
        return int(utils.read_weights(Path(path))["step"])
    except (ValueError, KeyError, TypeError):
        return -1


def resume_hint(out):
    """What is left to resume from in the run folder `out`."""
    last = out / "last.pt"
    if not last.exists():
        return "no checkpoint was written yet"
    return f"the last checkpoint is {last} (step {checkpoint_step(last)}): continue with --resume {last}"


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


# ----------------------------------------------------------------------------------------------------
# What a train.py command keeps beside the networks: the average of G's weights, and when to save and stop


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


class StopFlags:
    """Ctrl-C / SIGTERM (finish the step, save, stop; or stop the final scoring of the test split; a second
    Ctrl-C stops at once), the --save-every timer and divergence. All ranks must act at the same step, so
    the flags are agreed by an all_reduce on a CPU (gloo) group: checking them never makes the host wait
    for the GPU."""

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

    def exit_status(self):
        """A stopped run's exit status, as a shell gives a process that a signal ended: 130 for Ctrl-C,
        143 for SIGTERM (1 where another rank had the signal)."""
        return 128 + signal.Signals[self.signal] if self.signal else 1

    def restore(self):
        for s, handler in self.handlers.items():
            signal.signal(s, handler)
