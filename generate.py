"""Colorize or inpaint a folder of images with a checkpoint from train.py, at the images' own resolution.

    python generate.py --checkpoint runs/colorize/last.pt --input scans/ --output colored/
    python generate.py --checkpoint runs/inpaint/best.pt --input photos/ --output repaired/ --save-comparison
    python generate.py --checkpoint last.pt --input gray/ --output colored/ --reference originals/   # + scores.csv
    python generate.py --checkpoint last.pt --input photo.jpg --output out/ --mask hole.png --device cuda

The task, the network and its resolution come from the checkpoint. --input is a file or a folder
(walked recursively, following links but entering every real folder once); outputs mirror the relative
paths in --output as PNG. Inputs are never written: an --output inside --input is refused. Unreadable
images and images over --max-pixels (read from the header, before decoding) are reported with their
reason and skipped, and the exit status is 1 if any failed.

How an image of any size becomes the network's input and how the output is put back together at full
resolution is the task's own (colorize.py: the image's L at its own aspect in, the predicted ab upsampled
and joined to the ORIGINAL L, so the line art stays sharp; inpaint.py: the square around the hole in, the
prediction pasted back only inside the hole, every other pixel bit-identical to the input). Both put the
result together a band of rows at a time: memory follows the band, not the page. --workers processes
each take whole images through decoding, the network and the PNG; this file is the folder walk, the
batches, the workers, the files written and the scores.
"""
import argparse
import collections
import contextlib
import math
import multiprocessing
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import model
import tasks
import utils

def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # data
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--input", required=True, help="an image or a folder of images (recursive)")
    p.add_argument("--output", required=True, help="folder for the PNG results (never inside --input)")
    p.add_argument("--max-pixels", type=int, default=2 * Image.MAX_IMAGE_PIXELS, help="skip larger images, "
                   "judged from the header (default: Pillow's decompression-bomb limit, about 179 megapixels)")
    p.add_argument("--mask", default="auto", help="inpaint: 'auto' (a white square near the center is the "
                   "hole, else the center is blanked), 'center', or a mask image (white = hole)")
    p.add_argument("--save-comparison", action="store_true", help="also write <name>.comparison.png [input | output]")
    p.add_argument("--overwrite", action="store_true", help="redo images whose output exists")
    p.add_argument("--reference", type=reference_folder, help="folder of the true images (same relative paths, "
                   "any extension): score the outputs written into OUTPUT/scores.csv and scores.json")
    # model at test time
    p.add_argument("--size", type=int, help="network resolution; colorize: of the shorter side (default: the training size)")
    p.add_argument("--aspect", choices=["keep", "squash"], default="keep", help="colorize: the network sees the image "
                   "at its own aspect (as in training), or squashed to a --size square (as before; see README)")
    p.add_argument("--norm-stats", choices=model.NORM_STATS, help="BatchNorm statistics: each image's own or the "
                   "running averages of training (default: the checkpoint's choice, else running)")
    p.add_argument("--dropout", choices=["off", "on"],
                   help="dropout at test time (default: the checkpoint's choice, else off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test-time dropout, combined with each image's path")
    # system
    p.add_argument("--batch-size", type=int, default=8, help="images per network batch")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast precision (auto: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory format (default; the U-Net's transposed convolutions are 25%% faster on a CPU)")
    p.add_argument("--workers", type=int, help="processes that each take their share of the images through "
                   "decoding, the network and the PNG (0 or 1: this process alone; default: one per CPU core)")
    return p


# ----------------------------------------------------------------------------------------------------
# One process's work: every image of a chunk decoded for its network input, the network run on
# batches of one input shape, every image decoded again and finished a band at a time.


def prepare(job, run):
    """A job (source, destination, key) -> its item: the network input and what finishing needs, or
    the reason it failed."""
    src, dst, key = job
    item = dict(src=src, dst=dst, key=key)
    try:
        item.update(run.task.prepare_image(src, run))
    except Exception as e:  # a bad file is reported with its reason, the others go on
        item["error"] = utils.one_line(e)
    return item


def same_shape_batches(items, size):
    """Batches of at most `size` items with one network input shape each."""
    shapes = {}
    for item in items:
        shapes.setdefault(tuple(item["x"].shape), []).append(item)
    return [same[i:i + size] for same in shapes.values() for i in range(0, len(same), size)]


@torch.no_grad()
def run_network(batch, run):
    """G's outputs (B, C, H, W) on the CPU; each image's is the same whatever else is in its batch."""
    x = torch.stack([item["x"] for item in batch]).to(run.device)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seeds = [model.image_seed(run.seed, item["key"]) for item in batch]
    with utils.autocast(run.device, run.precision), model.test_time(run.G, run.norm_stats, run.dropout == "on", seeds):
        return run.G(x).float().cpu()


def write_result(item, fake, run):
    """Decode the image again and write its output (and comparison) band by band; score it if asked."""
    try:
        page = utils.read_page(item["src"], run.max_pixels)
        pieces = run.task.finish_image(item, fake, page, run)
        output = write_outputs(item["dst"], page.size, pieces, run.save_comparison, keep=bool(run.reference))
        if run.reference:
            hole = run.task.output_hole(item, page.size, run)
            item["scores"] = score_output(item["dst"], output, hole, run.reference, run.output, run.cfg["task"])
    except Exception as e:  # as in prepare: this image fails, the others go on
        item["error"] = utils.one_line(e)


def write_outputs(dst, size, pieces, comparison, keep):
    """Stream (input band, output band) pairs into dst, and [input | output] into <name>.comparison.png
    -> the whole output if keep (to score it), else None."""
    W, H = size
    kept = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(utils.PngWriter(dst, W, H))
        both = stack.enter_context(utils.PngWriter(dst.with_suffix(".comparison.png"), 2 * W, H)) if comparison else None
        for band, result in pieces:
            out.write(result)
            if both:
                both.write(np.concatenate([utils.as_rgb(band), result], axis=1))
            if keep:
                kept.append(result)
    return np.concatenate(kept) if keep else None


def process(jobs, run):
    """Jobs -> one record per job: its source and its error, or how its hole was found, or its scores."""
    items = [prepare(job, run) for job in jobs]
    for batch in same_shape_batches([item for item in items if "error" not in item], run.batch_size):
        for item, fake in zip(batch, run_network(batch, run)):
            write_result(item, fake, run)
    return [{k: item[k] for k in ("src", "error", "how", "scores") if k in item} for item in items]


# ----------------------------------------------------------------------------------------------------


def plan_jobs(input_path, output_dir, overwrite):
    """(source, destination, key) of every image, refusing any destination that is or would contain an
    input; the key, the source's path below --input, seeds the image's dropout."""
    input_path, output_dir = Path(input_path).resolve(), Path(output_dir).resolve()
    if not input_path.exists():
        raise SystemExit(f"error: --input {input_path} does not exist")
    root = input_path if input_path.is_dir() else input_path.parent
    if input_path.is_dir() and (output_dir == input_path or input_path in output_dir.parents):
        raise SystemExit(f"error: --output {output_dir} is inside --input {input_path}: inputs are never written over")
    files = utils.list_images(input_path, avoid=[output_dir])
    relative = [f.relative_to(root) for f in files]
    # a.jpg and a.png in one folder would both become a.png: name those a_jpg.png, a_png.png
    taken = collections.Counter(rel.with_suffix(".png") for rel in relative)

    def destination(rel):
        png = rel.with_suffix(".png")
        return output_dir / (png if taken[png] == 1 else rel.with_name(f"{rel.stem}_{rel.suffix[1:]}.png"))

    jobs = [(f, destination(rel), rel.as_posix()) for f, rel in zip(files, relative)]
    inputs = set(files)
    for _, dst, _ in jobs:
        if dst in inputs:
            raise SystemExit(f"error: the output {dst} would overwrite an input: choose another --output")
    return files, [job for job in jobs if overwrite or not job[1].exists()]


def load(args):
    """The run: args with their defaults resolved from the checkpoint, G on its device, the checkpoint's
    configuration, the mask file's hole. Exits with one line for what cannot work."""
    try:
        G, cfg = tasks.load_generator(args.checkpoint)  # the generator alone, memory-mapped
    except ValueError as e:
        raise SystemExit(f"error: cannot read checkpoint {e}")
    device = utils.pick_device(args.device)
    run = SimpleNamespace(**{**vars(args), "cfg": cfg, "task": tasks.TASKS[cfg["task"]], "device": device,
                             "mask_image": None, "G": G})
    run.size = args.size or cfg["image_size"]
    run.norm_stats = args.norm_stats or cfg.get("norm_stats", "running")
    run.dropout = args.dropout or cfg.get("dropout", "off")
    run.precision = utils.resolve_precision(args.precision, device)
    run.task.setup_generation(run)
    run.G = G.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format)
    return run


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


worker_run = None  # the run of this process when it is a worker: its parent's when forked


def start_worker(args, threads):
    """A forked worker keeps its parent's run, whose weights it shares; a spawned one loads its own."""
    global worker_run
    torch.set_num_threads(threads)
    worker_run = worker_run or load(args)


def process_in_worker(jobs):
    return process(jobs, worker_run)


@contextlib.contextmanager
def worker_pool(run, args, workers):
    """`workers` processes sharing the CPU cores (None for 0). Whole images go to each, network
    included: the stages of one image never wait for each other across processes, and the network at
    1 thread per core uses the cores better than at 2 threads beside busy decoders."""
    if not workers:
        yield None
        return
    global worker_run
    threads = max(1, cpu_count() // workers)
    # fork is fast and shares this process's run, weights included, but a forked child hangs in GNU
    # OpenMP on more than one thread once its parent has used OpenMP, and cannot use CUDA once its
    # parent has: then the workers start afresh and load their own.
    method = "fork" if threads == 1 and run.device.type == "cpu" else "spawn"
    worker_run = run
    try:
        with multiprocessing.get_context(method).Pool(workers, start_worker, (args, threads)) as pool:
            yield pool
    finally:
        worker_run = None


def main(args):
    run = load(args)
    files, jobs = plan_jobs(args.input, args.output, args.overwrite)
    workers = min(cpu_count() if args.workers is None else args.workers, len(jobs))
    if workers == 1:  # a lone worker would only keep this process waiting: this process does the work
        workers = 0
    print(f"{run.cfg['task']}: {len(files)} images in {args.input}, {len(files) - len(jobs)} already done, "
          f"{len(jobs)} to do -> {args.output} ({run.device}, {run.task.network_input_shape(run)}, "
          f"{workers} worker processes)")
    # Chunks of a batch at most, and as many as the workers at least: 12 images on 2 workers are 6 + 6.
    chunk = max(1, min(args.batch_size, math.ceil(len(jobs) / max(1, workers))))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    failed, scores = [], []
    with worker_pool(run, args, workers) as pool, tqdm(total=len(jobs), unit="img", dynamic_ncols=True) as bar:
        for records in pool.imap(process_in_worker, chunks) if pool else (process(c, run) for c in chunks):
            for record in records:
                if "how" in record:
                    tqdm.write(f"{record['src']}: {record['how']}")
                if "error" in record:
                    failed.append((record["src"], record["error"]))
                if "scores" in record:
                    scores.append(record["scores"])
            bar.update(len(records))
    if args.reference:
        report_scores(scores, args.output)
    for src, reason in failed:
        print(f"failed: {src}: {reason}", file=sys.stderr)
    print(f"Done: {len(jobs) - len(failed)} written to {args.output}, {len(failed)} failed.")
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------------
# Scores against the true images (--reference): the metrics of training's validation (the task's file),
# here at the outputs' full resolution and one image at a time, so that memory follows the largest image.

def reference_folder(path):
    if not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a folder")
    return path


def as_batch(rgb):
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def score_pair(task, output_rgb, reference_rgb, hole=None):
    """Scores of one output against its reference, (H, W, 3) uint8 each (and the (H, W) bool hole that
    was filled, for a task that scores inside it) -> {metric: float}."""
    if output_rgb.shape != reference_rgb.shape:
        (h, w), (H, W) = reference_rgb.shape[:2], output_rgb.shape[:2]
        raise ValueError(f"the reference is {w}x{h}, the output {W}x{H}")
    scores = tasks.TASKS[task].score_image(as_batch(output_rgb), as_batch(reference_rgb), hole)
    return {k: float(v) for k, v in scores.items()}


def find_reference(reference_dir, rel):
    """The reference image for the output `rel` (a.png): reference_dir/a.<any image extension>. Stats a
    few names instead of listing the folder, which would be quadratic in a folder of 100k images."""
    for ext in sorted(utils.IMAGE_EXTENSIONS):
        for name in (rel.stem + ext, rel.stem + ext.upper()):
            if (reference_dir / rel.parent / name).is_file():
                return reference_dir / rel.parent / name
    return None


def score_output(dst, out, hole, reference_dir, output_dir, task):
    """One written output (and its hole, or None) -> a scores row {"image": its path in output_dir,
    metric: value} or, when it cannot be scored, {"image", "error"}."""
    rel = Path(dst).resolve().relative_to(Path(output_dir).resolve())
    reference = find_reference(Path(reference_dir), rel)
    if reference is None:
        return {"image": str(rel), "error": f"no {rel.stem}.* in {Path(reference_dir) / rel.parent}"}
    try:
        return {"image": str(rel), **score_pair(task, out, np.array(utils.load_image(reference)), hole)}
    except Exception as e:  # a broken reference file raises whatever PIL raises
        return {"image": str(rel), "error": f"{reference}: {utils.one_line(e)}"}


def write_scores(rows, out_dir):
    """OUT/scores.csv (a row per scored image) and OUT/scores.json (the means) -> the means."""
    scored = [row for row in rows if "error" not in row]
    metrics = [k for k in scored[0] if k != "image"] if scored else []
    means = {k: float(np.mean([row[k] for row in scored])) for k in metrics}
    utils.write_scores(scored, {"mean": means}, Path(out_dir) / "scores.csv", Path(out_dir) / "scores.json",
                       images=len(scored), not_scored=len(rows) - len(scored))
    return means


def report_scores(rows, out_dir):
    """Write the scores and print the means: the output beside each baseline."""
    means = write_scores(rows, out_dir)
    for row in rows:
        if "error" in row:
            print(f"not scored: {row['image']}: {row['error']}", file=sys.stderr)
    baselines = sorted({k.split("_")[1] for k in means if k.startswith("baseline_")})
    print(f"Scores of {len(rows) - sum('error' in r for r in rows)} images -> {Path(out_dir) / 'scores.csv'}")
    print(f"{'mean of':24}{'output':>10}" + "".join(f"{b:>10}" for b in baselines))
    for metric in (k for k in means if not k.startswith("baseline_")):
        cells = [means[metric]] + [means.get(f"baseline_{b}_{metric}") for b in baselines]
        print(f"{metric:24}" + "".join(f"{c:10.4g}" if c is not None else f"{'':10}" for c in cells))


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
