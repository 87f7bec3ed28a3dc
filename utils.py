"""What both tasks and both scripts share: error and path text for reports, the metrics both tasks
report, atomic files, checkpoints and log files, plots, command-line helpers, devices, precision and the
torchrun set-up. Image files in and out are images.py.

Nothing here knows a task (colorize.py, inpaint.py), a dataset layout (classes.py) or a network (model.py).
"""
import argparse
import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import secrets
import zipfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------------
# Reports


def one_line(error):
    """An exception as one line for a report, its first sentence: 'OSError: image file is truncated'."""
    text = str(error).strip().split(". ")[0].splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def shown(path):
    """A path as text that can always be printed or written to a UTF-8 file: bytes of a file name that
    are not UTF-8 appear as \\xNN escapes instead of stopping the program."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# ----------------------------------------------------------------------------------------------------
# Metrics on images in [0, 1], one value per image

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def psnr_of_mse(mse):
    """PSNR in dB of a mean squared error of values in [0, 1] (10 log10(255^2 / MSE) on the 8-bit scale)."""
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def psnr(a, b):
    return psnr_of_mse(l2(a, b))


def ssim(a, b):
    """Mean SSIM per image with an 11x11 Gaussian window (sigma 1.5), on each channel, 'valid' borders."""
    window = min(SSIM_WINDOW, a.shape[-1], a.shape[-2])
    g = torch.exp(-((torch.arange(window, device=a.device) - window // 2) ** 2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(a.shape[1], 1, window, window).to(a)

    def blur(t):
        return F.conv2d(t, kernel, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return s.flatten(1).mean(1)


def l2(a, b):
    """Mean squared error per image: the Context Encoder paper's 'mean L2' on images in [0, 1]."""
    return ((a - b) ** 2).flatten(1).mean(1)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


NAME_MAX = 255  # bytes in a file name: the limit of ext4, XFS, Btrfs, ZFS and APFS
TEMPORARY = re.compile(r"\..*\.(\d{1,9})-[0-9a-f]{8}\.tmp", re.DOTALL)  # temporary_name's; group 1: the writer's pid


def fit_name(name, room):
    """A file name, or the longest start of it that fits in `room` bytes, cut between characters."""
    encoded = os.fsencode(name)
    return name if len(encoded) <= room else encoded[:room].decode("utf-8", "ignore")


def temporary_name(path):
    """A hidden name beside path, of this process alone (two processes writing one file never share a
    temporary file), in the same folder so that os.replace onto path is atomic. Its process id names the
    writer (remove_stale_temporaries), and a long name is cut so that the temporary one is never too long."""
    path = Path(path)
    tail = f".{os.getpid()}-{secrets.token_hex(4)}.tmp"
    return path.with_name(f".{fit_name(path.name, NAME_MAX - 1 - len(tail))}{tail}")


def temporary_beside(path):
    """(open binary file, its path): a new temporary file for path (temporary_name), created with the
    permissions any new file gets (the umask's), not mkstemp's private ones."""
    tmp = temporary_name(path)
    return os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"), tmp


def write_atomic(path, write):
    """write(file) into a temporary file beside path, then rename it over path: a crash never leaves half
    a file and a failed write never leaves the temporary one. A failed write (a full disk) exits with one
    line; the file it was to replace is left as it was."""
    path = Path(path)
    f, tmp = temporary_beside(path)
    try:
        with f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        full = " (the disk is full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise SystemExit(f"error: cannot write {shown(path)}: {e.strerror or one_line(e)}{full}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder):
    """Delete the temporary files in folder whose writer process is gone: one killed while writing (kill
    -9, the out-of-memory killer) leaves its own behind. Those of a running process (another run writing
    into the same folder) are kept, and so is every file not named as temporary_name names them."""
    with os.scandir(folder) as entries:
        for entry in entries:
            match = TEMPORARY.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False) and not process_exists(int(match[1])):
                with contextlib.suppress(FileNotFoundError):  # another run may have removed it first
                    os.unlink(entry.path)


def process_exists(pid):
    """Whether process pid runs. One that has ended but that its parent has not collected yet (a zombie,
    for a second or for good) does not: Linux says so in /proc; other POSIX systems answer signal 0. On
    Windows os.kill would end the process, so every process counts as running there."""
    if os.path.isdir("/proc/self"):
        try:
            return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
        except FileNotFoundError:
            return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it only asks whether the process is there
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it is there
        pass
    return True


def write_text(path, text):
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(state, path):
    """torch.save, atomically (write_atomic): a crash or a full disk never leaves a broken last.pt."""
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint dict (weights_only: a checkpoint can never run code), or exit with one line."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise SystemExit(f"error: checkpoint {path} does not exist")
    except Exception as e:
        raise SystemExit(f"error: cannot read checkpoint {path}: {one_line(e)}")


def read_weights(path):
    """A checkpoint's tensors, memory-mapped where the file allows it, or ValueError in one line."""
    if not path.is_file():
        raise ValueError("no such file")
    try:
        # mmap: only the tensors that are used are read, never the optimizer state of a training
        # checkpoint; torch can map only the zipfile format, the legacy one is read whole.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # unpickling raises many types on a file that is not a checkpoint
        raise ValueError(f"not a PyTorch checkpoint ({one_line(e)})") from None


def assign_weights(net, state_dict):
    """Load state_dict into `net` built on the meta device (no time spent on a random init), as float32,
    -> net in eval mode; ValueError in one line if the weights do not fit."""
    expected = net.state_dict()
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise ValueError("the generator weights are not all tensors")
    missing, unexpected = sorted(expected.keys() - state_dict.keys()), sorted(state_dict.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state_dict.keys() if expected[k].shape != state_dict[k].shape)
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", wrong)):
        if keys:
            more = ", ..." if len(keys) > 3 else ""
            raise ValueError(f"the weights do not fit a {type(net).__name__}: "
                             f"{len(keys)} {what} ({', '.join(keys[:3])}{more})")
    net.load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in state_dict.items()}, assign=True)
    return net.eval()


# ----------------------------------------------------------------------------------------------------
# Logs and plots


def write_csv(path, rows):
    """(Re)write a CSV file with these rows (dicts; the header is every key, in order of appearance),
    atomically; with no rows, remove it."""
    if not rows:
        Path(path).unlink(missing_ok=True)
        return
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_scores(rows, means, csv_path, json_path, **about):
    """Per-image scores (a CSV row each) and their means with what they are about (JSON)."""
    write_csv(csv_path, rows)
    write_json(json_path, {**about, **means})


def read_csv(path):
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_metrics(rows, path):
    """Losses (left) and validation metrics (right) against the step, one PNG redrawn at every validation."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training server
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [("loss_", "losses"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM")]
    for ax, (prefix, title) in zip(axes, panels):
        for key in rows[0]:
            if prefix in key:
                values = [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows]
                style = "--" if key.startswith("baseline") else "-"
                ax.plot(steps, values, style, marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.tight_layout()
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=80))
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# Command lines


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with the description as written and each flag's default, where it has one of its own (a
    default that depends on the task or the preset is spelled out in the flag's help)."""

    def _get_help_string(self, action):
        shown = action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
        return action.help + (" (default: %(default)s)" if shown and "%(default)" not in action.help else "")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (not the whole usage) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(kind, low=None, high=None, low_open=False, high_open=True):
    """An argparse type: an int or float in [low, high) (low_open: (low, ...; high_open=False: ..., high])."""
    what = "an integer" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or not math.isfinite(value):
            bounds = ([f"{'>' if low_open else '>='} {low}"] if low is not None else []) + \
                     ([f"{'<' if high_open else '<='} {high}"] if high is not None else [])
            raise argparse.ArgumentTypeError(f"{text} is not {what} {' and '.join(bounds) or 'that is finite'}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT, NATURAL, POSITIVE, NONNEGATIVE = number(int, 1), number(int, 0), number(float, 0, low_open=True), number(float, 0)


# ----------------------------------------------------------------------------------------------------
# Devices and torchrun


def pick_device(name, local_rank=0):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but no CUDA GPU is visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(device_name):
    """One code path for 1 or N processes: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, a plain run does not.
    nccl for CUDA, gloo for CPU (so the distributed path is tested without a GPU)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    return rank, world, device


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    """torch.autocast for bf16/fp16, a no-op context for fp32."""
    return torch.autocast(device.type, dtype=DTYPES[precision], enabled=precision != "fp32")


BF16_FEATURES = ("amx_bf16", "avx512_bf16", "bf16")  # /proc/cpuinfo: Intel AMX, AVX512-BF16; Arm's BF16


def native_bf16_feature(cpuinfo="/proc/cpuinfo"):
    """The feature with which this CPU executes bf16 natively, from the kernel's list of its flags, or None
    (where the list is not there, say off Linux, too: bf16 is then assumed emulated)."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    flags = {flag for line in lines if line.split(":")[0].strip() in ("flags", "Features")
             for flag in line.split(":", 1)[1].split()}
    return next((feature for feature in BF16_FEATURES if feature in flags), None)


def resolve_precision(precision, device):
    """The autocast precision to run and why: 'auto' is bf16 on CUDA, bf16 on a CPU that executes it
    natively (1.1-1.7x the speed of fp32 there), and fp32 on one that does not, where bf16 is emulated and
    several times slower."""
    if precision == "fp16" and device.type != "cuda":
        raise SystemExit("error: --precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        return "bf16", "auto: bf16 on CUDA"
    feature = native_bf16_feature()
    if feature:
        return "bf16", f"auto: this CPU executes bf16 natively ({feature})"
    return "fp32", "auto: this CPU has no native bf16, which it would emulate several times slower than fp32"
