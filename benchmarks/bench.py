"""Benchmarks of the real code on fabricated images (no dataset needed): training throughput per task and
speed-up variant, our step in fp32, bf16 and with --ema beside the reference pix2pix's, data loading
throughput per worker, the reorganization of raw trees, generate.py end to end, and its peak memory.

    python benchmarks/bench.py --quick                        # about 3 minutes on a 2-core CPU (see docs/speed.md)
    PIX2PIX_REF=../pytorch-CycleGAN-and-pix2pix python benchmarks/bench.py    # everything: 22 minutes on 2 cores
    python benchmarks/bench.py --device cuda --json bench-gpu.json     # one GPU, every figure also in JSON
    python benchmarks/bench.py --only train --tasks colorize --batches 1 --variants fp32 channels_last bf16
    PIX2PIX_REF=../pytorch-CycleGAN-and-pix2pix python benchmarks/bench.py --only step

--quick: batch 1, fewer steps and runs, no memory section; on a CPU fp32 only (and bf16 where native).
bf16 is measured where the device executes it natively (CUDA, CPUs with AVX512-BF16, AMX or Arm BF16);
on a CPU that would emulate it, 5-30 times slower than fp32, only when asked (--variants bf16).

Training: train.main itself, on the paper preset (G and D at the papers' sizes) on a small fabricated
tree; a step is timed from one call of the task's batch_to_xy to the next. Each figure is the median (min,
max) of --repeats timed steps after --warmup untimed ones. 'best' combines the variants that each beat
fp32 eager. Tables are markdown (docs/speed.md holds them). On a shared machine other work shows up as a
wide min-max range: the header prints the load average, the JSON every run. compile's first step is its
compilation, much shorter when Inductor's on-disk cache holds earlier runs.

Step: our colorize step on the paper preset (batch 1, 256) in fp32, in bf16 and with --ema, and, with
PIX2PIX_REF naming a checkout of the official pix2pix code (junyanz/pytorch-CycleGAN-and-pix2pix; commit
2a7afba measured here), its own Pix2PixModel.optimize_parameters at the same architecture, timed in rounds
interleaved in this process; without PIX2PIX_REF, ours alone and a one-line note.
"""
import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import torch
from PIL import Image

import common  # first: it puts the repo's modules on the path
from common import JPEG_QUALITY, REPO, describe_device, fabricate, log, table
import classes
import colorize
import generate
import images
import tasks
import train
import utils
import workers

LARGE_BATCH = 16  # a GPU's batch beside the paper's (Pix2Pix: 1), or the paper's where larger (Context Encoder: 64)
VARIANTS = {  # train.py flags of each variant; 'best' is made of the winners
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},  # autocast fp16 is CUDA-only in this repo (utils.resolve_precision)
    "compile": {"compile": True},
}
REFERENCE_STEPS = 4  # timed steps of each side per interleaved round
# --quick: rounds and timed steps of each side in the step section, generate.py runs and images timed per stage
QUICK_STEP_ROUNDS, QUICK_REFERENCE_STEPS, QUICK_GENERATE_REPEATS, QUICK_STAGE_IMAGES = 2, 3, 1, 2
EMA_DECAY = 0.999  # the EMA's cost per step does not depend on its decay
COMPILE_EXTRA_WARMUP = 1  # the first step compiles; one more absorbs a late recompilation
BEST_MARGIN = 1.03  # a variant joins 'best' only if 3% faster than fp32: less is run-to-run noise
REAL_TRY_LOAD_IMAGE = images.try_load_image  # load_without_draft wraps it while it is patched

# Raw image sizes of each dataset: COMICS scans range from panel crops to whole pages; CelebA's aligned faces.
RAW_SIZES = {"comics": [(1000, 1400), (2000, 2800)], "celeba": [(178, 218)]}
RAW_IMAGES = 24
GENERATE_SIZE, GENERATE_IMAGES = (1200, 1700), 12
COMMAND_IMAGES = 24  # a folder colorized from the command line, the whole process timed: start-up counts


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train and generate")
    p.add_argument("--only", choices=["train", "step", "loader", "reorganize", "generate", "memory"], help="run one section")
    p.add_argument("--quick", action="store_true",
                   help="batch 1, fewer steps and runs; on a CPU fp32 (and bf16 where native) only")
    p.add_argument("--tasks", nargs="+", choices=list(tasks.TASKS), default=list(tasks.TASKS), help="tasks to measure")
    p.add_argument("--batches", nargs="+", type=int, help=f"training batch sizes (default 1, and {LARGE_BATCH} or "
                   "the paper's batch where larger)")
    p.add_argument("--variants", nargs="+", choices=[*VARIANTS, "best"], help="training variants (default: all "
                   "that the device supports; fp32 eager is always measured, it is the baseline)")
    p.add_argument("--repeats", type=int, help="timed runs per figure (default 5, 3 with --quick)")
    p.add_argument("--warmup", type=int, help="untimed steps before timing (default 2, 1 with --quick; +1 for compile)")
    p.add_argument("--json", help="also write every figure to this JSON file")
    return p


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def num(v):
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


# ----------------------------------------------------------------------------------------------------
# Training throughput


def large_batch(task):
    return max(LARGE_BATCH, tasks.TASKS[task].paper["batch_size"])


def paper_tree(task, tmp):
    """The paper preset's tree (common.paper_tree) with enough drawings for the largest batch timed."""
    return common.paper_tree(task, tmp, max(map(large_batch, tasks.TASKS)))


def paper_config(task, tmp):
    return common.paper_config(task, paper_tree(task, tmp))


def time_training(task, batch, spec, steps, device, tmp):
    """Seconds of each of `steps` training steps of train.main itself on the paper preset (the first
    ones are the warm-up), and the peak GPU memory. A step is timed from one call of the task's
    batch_to_xy (the batch's colour conversion or masking, the first thing of every step) to the next:
    the D and G updates and the loop's own work, with images loaded in the main process (--workers 0)."""
    out = tmp / f"run-{task}-{batch}-{time.perf_counter_ns()}"
    flags = ["--task", task, "--data", str(paper_tree(task, tmp)), "--out", str(out), "--batch-size", str(batch),
             "--precision", spec.get("precision", "fp32"), "--device", device.type, "--workers", "0",
             "--stop-at", str(steps + 1), "--val-every", str(10**9), "--save-every-min", str(10**6),
             "--ema", str(spec.get("ema", 0))]
    flags += ["--channels-last"] * spec.get("channels_last", False) + ["--compile"] * spec.get("compile", False)
    if spec.get("compile"):
        torch.compiler.reset()  # fresh caches: earlier variants' graphs must not count against the recompile limit
    task_obj, stamps = tasks.TASKS[task], []
    batch_to_xy = task_obj.batch_to_xy

    def timed_batch_to_xy(*args):
        sync(device)
        stamps.append(time.perf_counter())
        return batch_to_xy(*args)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # The checkpoint written at --stop-at is not a step: skipping it saves seconds of disk per run.
    with mock.patch.object(task_obj, "batch_to_xy", timed_batch_to_xy), mock.patch.object(utils, "save_checkpoint"), \
            contextlib.redirect_stdout(sys.stderr):
        train.main(train.get_parser().parse_args(flags))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    shutil.rmtree(out, ignore_errors=True)
    return list(np.diff(stamps)[1:]), peak  # the first interval is the step-0 sample grid


def best_spec(results):
    """The combination of the variants that each beat fp32 eager by BEST_MARGIN; the fastest precision."""
    winners = [name for name, r in results.items() if r.get("speedup", 0) >= BEST_MARGIN]
    precisions = sorted((n for n in winners if "precision" in VARIANTS[n]), key=lambda n: -results[n]["speedup"])
    chosen = [n for n in winners if "precision" not in VARIANTS[n]] + precisions[:1]
    return chosen, {k: v for n in chosen for k, v in VARIANTS[n].items()}


def bench_train(args, device, tmp):
    rows = []
    for task in args.tasks:
        smallest = tasks.TASKS[task].smallest_batch(paper_config(task, tmp))  # train.py refuses less
        for requested in args.batches or ([1] if args.quick else [1, large_batch(task)]):
            batch = max(requested, smallest)
            results = {}
            for name in args.variants:
                spec, label = VARIANTS.get(name), name
                if name == "best":
                    chosen, spec = best_spec(results)
                    if len(chosen) < 2:  # nothing to combine: 'best' is the single winner, or fp32 itself
                        same = chosen[0] if chosen else "fp32"
                        results["best"] = dict(results[same], variant="best", note=f"= {same}")
                        continue
                    label = "+".join(chosen)
                log(f"train {task} batch {batch} {label} ...")
                steps = args.warmup + args.repeats + COMPILE_EXTRA_WARMUP * spec.get("compile", False)
                row = dict(task=task, batch=batch, requested=requested, variant=name, note=label * (name == "best"))
                try:
                    seconds, peak = time_training(task, batch, spec, steps, device, tmp)
                    timed = seconds[-args.repeats:]
                    row.update(images_per_s=summary([batch / s for s in timed]), s_per_step=statistics.median(timed),
                               first_step_s=seconds[0], peak_gib=peak)
                    base = row if name == "fp32" else results.get("fp32", {})
                    if "images_per_s" in base:
                        row["speedup"] = row["images_per_s"]["median"] / base["images_per_s"]["median"]
                    if spec.get("compile"):
                        row["note"] = f"{row['note']} first step {seconds[0]:.0f} s (compiling)".strip()
                except (Exception, SystemExit) as e:  # SystemExit: the repo's one-line refusals (fp16 on CPU)
                    row["note"] = utils.one_line(e)
                    torch.compiler.reset()
                results[name] = row
            rows += results.values()
    return rows


def train_table(rows, device):
    cuda = device.type == "cuda"
    headers = ["task", "batch", "variant", "img/s", "min", "max", "s/step", "vs fp32"] + ["peak GiB"] * cuda + ["note"]
    lines = []
    for r in rows:
        if "images_per_s" not in r:
            lines.append([r["task"], r["batch"], r["variant"]] + ["-"] * (5 + cuda) + [r["note"]])
            continue
        ips = r["images_per_s"]
        lines.append([r["task"], r["batch"], r["variant"], num(ips["median"]), num(ips["min"]), num(ips["max"]),
                      num(r["s_per_step"]), f"{r['speedup']:.2f}x" if "speedup" in r else "-"]
                     + ([f"{r['peak_gib']:.1f}"] if cuda else []) + [r["note"]])
    text = table(headers, lines, "lrl" + "r" * (5 + cuda) + "l")
    for r in rows:
        if r["batch"] != r["requested"] and r["variant"] == "fp32":
            text += (f"\n\n{r['task']} runs batch {r['batch']} where batch {r['requested']} was asked: train.py "
                     f"refuses less for its paper preset.")
    return text


# ----------------------------------------------------------------------------------------------------
# The reference implementation, side by side


def reference_model(device):
    """The official pix2pix (PIX2PIX_REF: a checkout of junyanz/pytorch-CycleGAN-and-pix2pix) with our
    colorize architecture: its own U-Net 256 and PatchGAN (1 -> 2 channels), init, GANLoss and
    optimize_parameters; or (None, why not)."""
    ref = os.environ.get("PIX2PIX_REF")
    if not ref:
        return None, "PIX2PIX_REF is not set: the reference implementation is not measured"
    sys.path.append(ref)  # appended: the reference's own train.py and test.py must not shadow ours
    try:
        from models.pix2pix_model import Pix2PixModel
    except ImportError as e:
        return None, f"cannot import the reference from PIX2PIX_REF={ref}: {utils.one_line(e)}"
    opt = SimpleNamespace(isTrain=True, checkpoints_dir=tempfile.gettempdir(), name="bench", device=device,
                          preprocess="resize_and_crop", input_nc=1, output_nc=2, ngf=64, ndf=64, netG="unet_256",
                          netD="basic", n_layers_D=3, norm="batch", no_dropout=False, init_type="normal",
                          init_gain=0.02, gan_mode="vanilla", lr=2e-4, beta1=0.5, lambda_L1=100.0, direction="AtoB")
    return Pix2PixModel(opt), None


def time_reference(ref, steps, device):
    """Seconds of each of `steps` optimization steps of the reference (G forward, D update, G update)."""
    g = torch.Generator().manual_seed(0)
    data = {"A": torch.rand(1, 1, 256, 256, generator=g) * 2 - 1, "B": torch.rand(1, 2, 256, 256, generator=g) * 2 - 1,
            "A_paths": ["bench"], "B_paths": ["bench"]}
    seconds = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        ref.set_input(data)
        ref.optimize_parameters()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return seconds


STEP_VARIANTS = {"fp32": {}, "bf16": {"precision": "bf16"}, "fp32 + ema": {"ema": EMA_DECAY}}


def step_variants(args, device):
    """Our variants in the step section: bf16 where it is native, or where --variants asks for it."""
    native = device.type == "cuda" or utils.native_bf16_feature()
    return [v for v in STEP_VARIANTS if v != "bf16" or native or "bf16" in (args.variants or [])]


def bench_step(args, device, tmp):
    """Our colorize step (train.main, paper preset, batch 1) in each variant and the reference's, in
    rounds interleaved in this one process so that all see the same machine."""
    ref, why = reference_model(device)
    if ref is None:
        log(why)
    times = {name: [] for name in [*step_variants(args, device), *(["reference"] if ref else [])]}
    rounds, steps = (QUICK_STEP_ROUNDS, QUICK_REFERENCE_STEPS) if args.quick else (args.repeats, REFERENCE_STEPS)
    for r in range(rounds):
        log(f"step: round {r + 1}/{rounds} ...")
        for name in times:
            if name == "reference":
                times[name] += time_reference(ref, args.warmup + steps, device)[args.warmup:]
            else:
                spec = STEP_VARIANTS[name]
                times[name] += time_training(colorize.TASK.name, 1, spec, args.warmup + steps, device, tmp)[0][args.warmup:]
    if "bf16" not in times:
        why = "; ".join(filter(None, [why, "bf16 not measured: this CPU would emulate it (--variants bf16 to measure it)"]))
    return dict(steps={name: summary(t) for name, t in times.items()}, note=why)


def step_table(r):
    fp32 = r["steps"]["fp32"]["median"]
    rows = [[name if name == "reference" else f"this repo, {name}", num(t["median"]), num(t["min"]), num(t["max"]),
             len(t["runs"]), f"{t['median'] / fp32:.2f}x"] for name, t in r["steps"].items()]
    text = table(["colorize step, batch 1, 256", "s/step", "min", "max", "steps", "vs fp32"], rows, "lrrrrr")
    return text + (f"\n\n{r['note']}" if r["note"] else "\n\nmedians of interleaved rounds")


# ----------------------------------------------------------------------------------------------------
# Loader throughput, per worker: one process reading dataset[i], as each DataLoader worker does


def load_without_draft(path, min_side=None):
    """images.try_load_image decoding JPEGs at full size. ImageDataset hands the transform's min_side to
    try_load_image, and the transform needs it for its own resize: so draft decoding is turned off where
    the file is opened, in this measurement only."""
    return REAL_TRY_LOAD_IMAGE(path)


def time_loader(dataset, repeats):
    """Images per second of each pass over the dataset. The files sit in the page cache: this measures
    decoding and the transform, not the disk."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        rates.append(len(dataset) / (time.perf_counter() - t0))
    return summary(rates)


def bench_loader(args, device, tmp):
    """Each task's dataset as it comes (raw images of RAW_SIZES, with and without JPEG draft decoding) and
    pre-resized by classes.py, through ImageDataset and the task's training transform."""
    rows = []
    for seed, task in enumerate(args.tasks):
        task_obj, cfg = tasks.TASKS[task], paper_config(task, tmp)
        sizes = RAW_SIZES[task_obj.dataset]
        log(f"loader: fabricating {task_obj.dataset} images ...")
        raw = fabricate(tmp / f"raw-{task}", [sizes[i % len(sizes)] for i in range(RAW_IMAGES)], task_obj.draw, 1000 * seed)
        with contextlib.redirect_stderr(io.StringIO()):  # reorganize's progress bar
            classes.reorganize([(p, p.name) for p in raw], tmp / f"resized-{task}", size=cfg.load_size,
                               prepare=classes.RESIZE[task_obj.dataset])
        resized = sorted((tmp / f"resized-{task}").glob("*.jpg"))
        transform = task_obj.transforms(cfg)[0]
        cases = [("raw", f"{task_obj.dataset} raw, {sizes[0][0]}x{sizes[0][1]}+ (JPEG draft decoding)", raw),
                 ("raw_no_draft", f"{task_obj.dataset} raw, draft decoding off", raw),
                 ("resized", f"{task_obj.dataset} pre-resized to {cfg.load_size} (classes.py --size)", resized)]
        for case, name, files in cases:
            log(f"loader: {name} ...")
            no_draft = mock.patch.object(images, "try_load_image", load_without_draft)
            with no_draft if case == "raw_no_draft" else contextlib.nullcontext():
                rate = time_loader(classes.ImageDataset(files, transform), args.repeats)
            rows.append(dict(task=task, case=case, source=name, files=len(files), images_per_s=rate,
                             kb_per_file=sum(f.stat().st_size for f in files) / len(files) / 1024))
    return rows


def loader_table(rows):
    lines = [[r["source"], r["files"], f"{r['kb_per_file']:.0f}", num(r["images_per_s"]["median"]),
              num(r["images_per_s"]["min"]), num(r["images_per_s"]["max"]), num(1000 / r["images_per_s"]["median"])]
             for r in rows]
    headers = ["data (ImageDataset + train transform)", "files", "KB/file", "img/s/worker", "min", "max", "ms/img"]
    text = table(headers, lines, "lrrrrrr")
    for task in dict.fromkeys(r["task"] for r in rows):
        rate = {r["case"]: r["images_per_s"]["median"] for r in rows if r["task"] == task}
        text += f"\n{task}: JPEG draft decoding makes its raw images {rate['raw'] / rate['raw_no_draft']:.1f}x faster to load."
    return text


# ----------------------------------------------------------------------------------------------------
# The reorganization of a raw tree (classes.py), timed as a user runs it


REORGANIZE_IMAGES = {"comics": 400, "celeba": 1000}
# W x H: COMICS' archive averages about 53 KB a panel (61 GiB / 1.23M); CelebA's aligned faces.
REORGANIZE_SIZE = {"comics": (700, 1000), "celeba": RAW_SIZES["celeba"][0]}
RAW_FILE = {  # the i-th raw image in each dataset's own layout: COMICS book folders, CelebA numbered files
    "comics": lambda i: Path(classes.COMICS_DIR, str(i // 20), f"{i % 20}_0.jpg"),
    "celeba": lambda i: Path(classes.CELEBA_DIR, f"{i + 1:06d}.jpg"),
}


def bench_reorganize(args, device, tmp):
    """`python classes.py <dataset> RAW OUT --size N` on a fabricated raw tree of each dataset, all CPU
    cores -> seconds per 100,000 images."""
    rows = []
    for task in args.tasks:
        task_obj, cfg = tasks.TASKS[task], paper_config(task, tmp)
        count = REORGANIZE_IMAGES[task_obj.dataset]
        size = REORGANIZE_SIZE[task_obj.dataset]
        log(f"reorganize: fabricating {count} {task_obj.dataset} images ...")
        files = fabricate(tmp / f"flat-{task}", [size] * count, task_obj.draw, 5000)
        raw = tmp / f"raw-tree-{task}"
        for i, f in enumerate(files):
            dst = raw / RAW_FILE[task_obj.dataset](i)
            dst.parent.mkdir(parents=True, exist_ok=True)
            f.rename(dst)
        kb = sum(p.stat().st_size for p in raw.rglob("*.jpg")) / count / 1024
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            classes.reorganize_main([task_obj.dataset, str(raw), str(tmp / f"organized-{task}"), "--size", str(cfg.load_size)])
        seconds = time.perf_counter() - t0
        rows.append(dict(dataset=task_obj.dataset, images=count, size=size, kb=kb, load_size=cfg.load_size,
                         seconds=seconds, per_100k=seconds / count * 1e5, workers=os.cpu_count()))
    return rows


def reorganize_table(rows):
    lines = [[f"{r['dataset']}, {r['images']} images of {r['size'][0]}x{r['size'][1]} ({r['kb']:.0f} KB)",
              f"--size {r['load_size']}", r["workers"], f"{r['seconds']:.1f}", f"{r['per_100k'] / 60:.0f} min"] for r in rows]
    return table(["classes.py on a raw tree", "", "workers", "seconds", "per 100,000 images"], lines, "llrrr")


# ----------------------------------------------------------------------------------------------------
# generate.py end to end


def bench_generate(args, device, tmp):
    """generate.py end to end with its defaults, on GENERATE_IMAGES drawings of GENERATE_SIZE per task,
    with a generator of the paper's size (untrained: the time does not depend on the weights)."""
    rows = []
    for task in args.tasks:
        log(f"generate {task}: fabricating images and a checkpoint ...")
        files = fabricate(tmp / f"pages-{task}", [GENERATE_SIZE] * GENERATE_IMAGES, tasks.TASKS[task].draw, 2000)
        checkpoint = common.paper_generator(task, tmp)[2]
        flags = ["--checkpoint", checkpoint, "--input", files[0].parent, "--output", tmp / f"out-{task}",
                 "--device", device.type, "--overwrite"]
        seconds = []
        for _ in range(QUICK_GENERATE_REPEATS if args.quick else args.repeats):
            log(f"generate {task} ...")
            t0 = time.perf_counter()
            common.generate_quietly(flags)
            seconds.append(time.perf_counter() - t0)
        megapixels = len(files) * GENERATE_SIZE[0] * GENERATE_SIZE[1] / 1e6
        many = fabricate(tmp / f"command-{task}", [GENERATE_SIZE] * COMMAND_IMAGES, tasks.TASKS[task].draw, 3000)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "generate.py", "--checkpoint", str(checkpoint), "--input", str(many[0].parent),
                        "--output", str(tmp / f"command-out-{task}"), "--device", device.type],
                       cwd=REPO, check=True, capture_output=True)
        command = dict(images=len(many), images_per_s=len(many) / (time.perf_counter() - t0))
        rows.append(dict(task=task, images=len(files), size=GENERATE_SIZE, workers=workers.cpu_count(),  # the default
                         images_per_s=summary([len(files) / s for s in seconds]),
                         megapixels_per_s=summary([megapixels / s for s in seconds]), command=command,
                         stages=time_stages(task, checkpoint, files[:QUICK_STAGE_IMAGES if args.quick else None], device)))
    return rows


def generate_table(rows):
    lines = []
    for r in rows:
        ips, mps = r["images_per_s"], r["megapixels_per_s"]
        name = f"{r['task']} {r['images']} images {r['size'][0]}x{r['size'][1]}, {r['workers']} workers"
        lines.append([name, num(ips["median"]), num(ips["min"]), num(ips["max"]), num(mps["median"])])
        command = r["command"]
        lines.append([f"{r['task']} {command['images']} images from the command line (whole process)",
                      num(command["images_per_s"]), "", "", ""])
    text = table(["generate.py (end to end)", "img/s", "min", "max", "MP/s"], lines, "lrrrr")
    for r in rows:
        stages = "; ".join(f"{name} {seconds:.3g} s" for name, seconds in r["stages"].items())
        text += f"\n\n{r['task']}, where the time goes: {stages}"
    return text


MEMORY_SCAN = (8400, 11800)  # W x H: a 99-megapixel scan, a whole page at 1200 dpi


def bench_memory(args, device, tmp):
    """Peak resident memory of `python generate.py` with its defaults (each worker process and the main
    one are counted alone: the largest of them), colorizing a folder of GENERATE_SIZE panels and one
    MEMORY_SCAN page, with a generator of the paper's size."""
    checkpoint = common.paper_generator(colorize.TASK.name, tmp)[2]
    draw = colorize.TASK.draw
    log("memory: fabricating a folder of panels and a scan ...")
    panels = fabricate(tmp / "memory-panels", [GENERATE_SIZE] * COMMAND_IMAGES, draw, 4000)[0].parent
    (tmp / "memory-scan").mkdir()
    draw(4000, max(GENERATE_SIZE)).resize(MEMORY_SCAN, Image.BICUBIC).save(tmp / "memory-scan" / "scan.jpg", quality=JPEG_QUALITY)
    # The children's peak, as /usr/bin/time -v reports it, from a fresh process per case (ru_maxrss: KiB
    # on Linux, bytes on macOS).
    peak = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == 'darwin' else 1024))")
    rows = []
    for name, folder, (w, h), count in [(f"{COMMAND_IMAGES} panels", panels, GENERATE_SIZE, COMMAND_IMAGES),
                                        ("one scan", tmp / "memory-scan", MEMORY_SCAN, 1)]:
        log(f"memory: generate.py on {name} ...")
        t0 = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", peak, sys.executable, "generate.py", "--checkpoint", str(checkpoint),
                                 "--input", str(folder), "--output", str(tmp / f"memory-out-{w}"), "--device", device.type],
                                cwd=REPO, check=True, capture_output=True, text=True)
        rows.append(dict(case=f"{name} of {w}x{h} ({w * h / 1e6:.0f} MP)", images=count, seconds=time.perf_counter() - t0,
                         peak_mib=int(result.stdout.split()[-1]) / 2**20))
    return rows


def memory_table(rows):
    lines = [[r["case"], f"{r['seconds']:.1f}", f"{r['peak_mib']:.0f}"] for r in rows]
    return table(["generate.py, colorize, defaults", "seconds", "peak RSS, MiB"], lines, "lrr")


def time_stages(task, checkpoint, files, device):
    """Seconds of each stage of generate.py for one worker (one thread, as each of one per core): start-up
    (the interpreter and the imports, in a fresh process), loading G, and per image the decoding and
    resizing (image_to_input), the network, the full-resolution finish and the PNG."""
    stages = {}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import generate"], cwd=REPO, check=True)
    stages["start-up (interpreter, imports)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder = files[0].parent
    args = generate.get_parser().parse_args(["--checkpoint", str(checkpoint), "--input", str(folder), "--output",
                                             str(folder.parent / "stages"), "--device", device.type])
    run = generate.load(args)
    stages["loading G"] = time.perf_counter() - t0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spent = dict.fromkeys(["decoding and resizing", "network", "full-size finish", "PNG"], 0.0)
    try:
        for src in files:
            t0 = time.perf_counter()
            item = dict(src=src, dst=folder.parent / "stages" / f"{src.stem}.png", key=src.name, image=src.name,
                        rel=Path(src.name), **run.task.image_to_input(src, run))
            t1 = time.perf_counter()
            fake = generate.run_network([item], run)[0]
            t2 = time.perf_counter()
            page = images.read_page(src, run.max_pixels)
            bands = list(run.task.finish_image(item, fake, page, run))
            t3 = time.perf_counter()
            with images.PngWriter(item["dst"], *page.size) as png:
                for _, rows in bands:
                    png.write(rows)
            t4 = time.perf_counter()
            for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                spent[name] += seconds
    finally:
        torch.set_num_threads(threads)
    stages.update({f"{name} per image": seconds / len(files) for name, seconds in spent.items()})
    return stages


# ----------------------------------------------------------------------------------------------------


def main(args):
    device = utils.pick_device(args.device)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.variants is None:  # compile on CPU is minutes of C++ codegen per variant: not in --quick
        skip = {"fp16"} if device.type == "cpu" else set()
        # --quick: fp32 and what may beat it here (bf16 where native; channels-last and compile only on a GPU)
        skip |= {"compile", "channels_last", "best"} if args.quick and device.type == "cpu" else set()
        skip |= set() if device.type == "cuda" or utils.native_bf16_feature() else {"bf16"}
        args.variants = [v for v in [*VARIANTS, "best"] if v not in skip]
    args.variants = ["fp32"] + [v for v in args.variants if v != "fp32"]  # the baseline of every speed-up
    command = "python " + shlex.join(sys.argv)
    report = dict(device=describe_device(device), device_type=device.type, torch=torch.__version__,
                  cpu_count=os.cpu_count(), load_average=os.getloadavg()[0], command=command,
                  repeats=args.repeats, warmup=args.warmup)
    # The load average tells a reader of the figures whether other work shared the machine.
    print(f"device: {report['device']} | torch {report['torch']} | load average {report['load_average']:.1f} "
          f"| repeats {args.repeats}, warm-up {args.warmup} | {command}\n", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        sections = {"train": (bench_train, lambda rows: train_table(rows, device)), "step": (bench_step, step_table),
                    "loader": (bench_loader, loader_table), "reorganize": (bench_reorganize, reorganize_table),
                    "generate": (bench_generate, generate_table), "memory": (bench_memory, memory_table)}
        for name, (measure, show) in sections.items():
            if args.only == name or (args.only is None and not (args.quick and name == "memory")):
                t0 = time.perf_counter()
                report[name] = measure(args, device, tmp)
                report.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
                print(show(report[name]) + "\n", flush=True)
                log(f"{name}: {report['section_seconds'][name]:.0f} s")
    report["seconds"] = time.perf_counter() - started
    print(f"total {report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(get_parser().parse_args())
