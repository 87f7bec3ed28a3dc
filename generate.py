"""Colorize or inpaint a folder of images with a checkpoint from train.py, at the images' own resolution.

    python generate.py --checkpoint runs/colorize-demo/best.pt --input scans/ --output colored/
    python generate.py --checkpoint runs/inpaint-demo/best.pt --input photos/ --output repaired/ --save-comparison
    python generate.py --checkpoint best.pt --input gray/ --output colored/ --reference originals/   # + scores
    python generate.py --checkpoint best.pt --input photo.jpg --output out/ --mask hole.png --device cuda

The task, the network and its resolution come from the checkpoint. --input is a file or a folder
(walked recursively, following links but entering every real folder once, opening regular files only);
outputs mirror the relative paths in --output as PNG: a/b.jpg -> a/b.png, and where two inputs of a
folder would meet (a.jpg and a.png) each keeps its whole name (a.jpg.png, a.png.png). Inputs are never
written: an --output inside --input is refused. Unreadable images and images over --max-pixels (read from
the header, before decoding) are reported with their reason and skipped, and the exit status is 1 if any
failed. Each output records the checkpoint and settings that made it (OUTPUT/generate.json, and a tag in
the PNG): a rerun goes on where a run stopped and never mixes outputs of another checkpoint or settings
into the folder (--overwrite redoes them all); the temporary files of a killed run are removed at the
next run. OUTPUT/index.html shows every input beside its output (and, with --reference, its true image and
scores, the worst first) as thumbnails linked to the full files.

Colorize keeps each image's size and its own lightness (the line art): the network sees the image squashed
to its square, and the colour it predicts is brought back to full size guided by that lightness, so that it
stays inside the ink lines (docs/colour.md). Inpaint gives the network the square around the hole and
pastes its prediction back inside the hole only: every other pixel is the input's. Memory follows a band
of rows, not the page; --workers processes each take whole images.
"""
# The folder walk -> a job per image -> process (in this process or workers.py's) -> a record per image ->
# the outputs page and the scores. How an image becomes the network's input and comes back at full size is
# the task's own (colorize.py, inpaint.py).
import argparse
import collections
import contextlib
import hashlib
import json
import math
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import images
import model
import pages
import tasks
import utils
import workers

RECORD = "generate.json"  # OUTPUT/generate.json: what made the outputs, by tag


def get_parser():
    p = utils.Parser(description=__doc__, formatter_class=utils.HelpFormatter)
    g = p.add_argument_group("images")
    g.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run, an --export of one, or an "
                   "official pix2pix colorization latest_net_G.pth")
    g.add_argument("--input", required=True, help="an image or a folder of images (recursive)")
    g.add_argument("--output", required=True, help="folder for the PNG results (never inside --input)")
    g.add_argument("--reference", help="folder of the true images (same relative paths, "
                   "any extension): score every output into OUTPUT/scores.csv and scores.json (default: no scores)")
    g.add_argument("--save-comparison", action="store_true", help="also write <name>.comparison.png [input | output]")
    g.add_argument("--overwrite", action="store_true", help="redo every image, also those whose output exists")
    g.add_argument("--max-pixels", type=utils.POSITIVE_INT, default=2 * Image.MAX_IMAGE_PIXELS, help="skip larger "
                   "images, judged from the header (Pillow's decompression-bomb limit, about 179 megapixels)")
    g = p.add_argument_group("test time", "Defaults come from the checkpoint: its network size and the test-time "
                             "choices of its run.")
    g.add_argument("--size", type=utils.POSITIVE_INT, help="network resolution: colorize's square side (the shorter "
                   "side with --aspect keep), inpaint's context square (default: the training size)")
    g.add_argument("--norm-stats", choices=["auto", *model.NORM_STATS], default="auto", help="BatchNorm statistics: "
                   "each image's own or the running averages of training; auto: the checkpoint's choice, else running")
    g.add_argument("--test-dropout", choices=["off", "on"], help="dropout at test time (default: the checkpoint's "
                   "choice, else off)")
    g.add_argument("--seed", type=int, default=0, help="seed of the test-time dropout, combined with each image's path")
    for task in tasks.TASKS.values():  # each task's own flags, in a group of its own
        task.add_generate_flags(p)
    g = p.add_argument_group("system")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs")
    g.add_argument("--batch-size", type=utils.POSITIVE_INT, default=8, help="images per network batch")
    g.add_argument("--workers", type=utils.NATURAL, help="processes that each take their share of the images through "
                   "decoding, the network and the PNG (0 or 1: this process alone; default: one per CPU core on "
                   "the CPU, none beside a GPU)")
    g.add_argument("--precision", choices=["auto", *utils.DTYPES], default="auto", help="autocast precision (auto: "
                   "bf16 on CUDA and on CPUs that execute it natively, else fp32)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last memory layout (25%% faster for the U-Net on the CPU measured)")
    return p


# ----------------------------------------------------------------------------------------------------
# One process's work: every image of a chunk decoded for its network input, the network run on
# batches of one input shape, every image decoded again and finished a band at a time.


def prepare(job, run):
    """A job -> its item: the network input and what finishing needs, or the reason it failed."""
    item = dict(job)
    try:
        item.update(run.task.image_to_input(job["src"], run))
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
    with utils.autocast(run.device, run.precision), model.test_time(run.G, run.norm_stats, run.test_dropout == "on", seeds):
        return run.G(x).float().cpu()


def write_result(item, fake, run):
    """Decode the image again and write its output (and comparison) band by band; score it if asked."""
    try:
        page = images.read_page(item["src"], run.max_pixels)
        pieces = run.task.finish_image(item, fake, page, run)
        thumbnails = [pages.thumbnail_path(run.output, item["name"], kind) for kind in ("input", "output")]
        texts = {TAG_KEY: run.tag, **({SIDES_KEY: item["sides"]} if item["sides"] else {})}
        output = write_outputs(item["dst"], page.size, pieces, run.save_comparison, texts, thumbnails,
                               keep=bool(run.reference))
        if run.reference:
            item["scores"] = score_output(item, output, run.task.output_hole(item, page.size, run), run)
    except Exception as e:  # as in prepare: this image fails, the others go on
        item["error"] = utils.one_line(e)


def rescore(item, run):
    """Score an output that an earlier run of the same checkpoint and settings wrote."""
    try:
        output = np.array(images.load_image(item["dst"]))
        item["scores"] = score_output(item, output, run.task.output_hole(item, output.shape[1::-1], run), run)
    except Exception as e:  # an output broken since: report it, the others go on
        item["error"] = f"cannot score {utils.shown(item['dst'])}: {utils.one_line(e)}"


def write_outputs(dst, size, pieces, comparison, texts, thumbnails, keep):
    """Stream (input band, output band) pairs into dst, and [input | output] into its comparison, each
    tagged with what made it (texts: PNG text chunks), and into the thumbnails of input and output -> the
    whole output if keep (to score it), else None."""
    W, H = size
    kept, small = [], [pages.Thumbnail(W, H), pages.Thumbnail(W, H)]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(images.PngWriter(dst, W, H, texts))
        both = stack.enter_context(images.PngWriter(comparison_of(dst), 2 * W, H, texts)) if comparison else None
        for band, result in pieces:
            out.write(result)
            if both:
                both.write(np.concatenate([images.as_rgb(band), result], axis=1))
            small[0].add(band)
            small[1].add(result)
            if keep:
                kept.append(result)
        for thumbnail, path in zip(small, thumbnails):  # before the outputs are in place: written means all written
            thumbnail.save(path)
    return np.concatenate(kept) if keep else None


def process(jobs, run):
    """Jobs -> one record per job: its source and its error, or how its hole was found, or its scores.
    Jobs marked "score" have their output already: it is only scored."""
    items = [prepare(job, run) for job in jobs]
    for item in items:
        if item.get("score") and "error" not in item:
            rescore(item, run)
    made = [item for item in items if "error" not in item and not item.get("score")]
    for batch in same_shape_batches(made, run.batch_size):
        for item, fake in zip(batch, run_network(batch, run)):
            write_result(item, fake, run)
    return [{k: item[k] for k in ("src", "error", "how", "scores", "score") if k in item} for item in items]


# ----------------------------------------------------------------------------------------------------
# The folders: where each output goes, what is done already, and what made it.

TAG_KEY = "generate.py"  # the PNG text chunk that names what made an output (a key of OUTPUT/generate.json)
SIDES_KEY = "generate.py side files"  # the PNG text chunk of the digest of the output's side files, if any


def add_side_files(jobs, run):
    """Each job's side files (Task.side_files) as job["sides"], a digest of their bytes ("" for none), which
    its output records -> {what: how many inputs have one}."""
    counts = collections.Counter()
    for job in jobs:
        files = run.task.side_files(job["src"], run)
        counts.update({what: path is not None for what, path in files.items()})  # 0 for none: said too
        found = sorted((what, path) for what, path in files.items() if path is not None)
        digest = hashlib.sha256()
        for what, path in found:
            digest.update(what.encode() + b"\0" + file_bytes(path))
        job["sides"] = digest.hexdigest()[:16] if found else ""
    return counts


def file_bytes(path):
    """A file's bytes, or for one that cannot be read the reason (the task reports it when it reads it)."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        return str(e).encode()


def comparison_of(dst):
    return dst.with_suffix(".comparison.png")


def output_names(relative, comparison):
    """{input path: output path}, relative to --input and --output: a/b.jpg -> a/b.png. Inputs whose
    outputs (or comparisons) would meet keep their whole name instead: a.jpg -> a.jpg.png, a.png ->
    a.png.png. Whole names never meet (each ends in its own image extension, then .png), so this ends."""
    whole = set()
    while True:
        names = {rel: rel.with_name(rel.name + ".png") if rel in whole else rel.with_suffix(".png") for rel in relative}
        claims = collections.defaultdict(list)
        for rel, out in names.items():
            for claimed in (out, comparison_of(out)) if comparison else (out,):
                claims[claimed].append(rel)
        meeting = {rel for rels in claims.values() if len(rels) > 1 for rel in rels} - whole
        if not meeting:
            return names
        whole |= meeting


def check_folders(input_path, output_dir, reference):
    """Refuse an --input or --reference that is not there and an --output inside --input or that cannot
    be written, before anything else: the output folder is made and a file is written in it and removed."""
    if not input_path.exists():
        raise SystemExit(f"error: --input {input_path} does not exist")
    if reference and not Path(reference).is_dir():
        raise SystemExit(f"error: --reference {reference} is not a folder")
    if input_path.is_dir() and (output_dir == input_path or input_path in output_dir.parents):
        raise SystemExit(f"error: --output {output_dir} is inside --input {input_path}: inputs are never written over")
    if output_dir.exists() and not output_dir.is_dir():
        raise SystemExit(f"error: --output {output_dir} is a file, not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe, path = utils.temporary_beside(output_dir / RECORD)
        probe.close()
        path.unlink()
    except OSError as e:
        raise SystemExit(f"error: cannot write into --output {output_dir}: {e.strerror or utils.one_line(e)}")


def name_too_long(dst, comparison):
    """Why the output dst (or its comparison) cannot be written under its name, or None if it can: a.jpg
    and a.png with 251-byte stems have legal names, but not their outputs a.jpg.png and a.png.png."""
    for what, path in [("output", dst)] + ([("comparison", comparison_of(dst))] if comparison else []):
        length = len(os.fsencode(path.name))
        if length > utils.NAME_MAX:
            return f"the {what}'s file name would be {length} bytes, over the {utils.NAME_MAX} a file name can have"
    return None


def plan_jobs(input_path, output_dir, comparison, reference=None):
    """-> (a job {src, dst, name, image, key, rel} for every image below --input whose outputs can have
    their names, [(src, reason)] for the others), refusing any destination that is an input. name is the
    output's path below --output, image the same as text; the key, the source's path below --input, seeds
    the image's dropout."""
    input_path, output_dir = Path(input_path).resolve(), Path(output_dir).resolve()
    check_folders(input_path, output_dir, reference)
    files = images.list_images(input_path, avoid=[output_dir])
    root = input_path if input_path.is_dir() else input_path.parent
    relative = [f.relative_to(root) for f in files]
    names = output_names(relative, comparison)
    jobs = [dict(src=f, dst=output_dir / names[rel], name=names[rel], image=utils.shown(names[rel]), key=rel.as_posix(),
                 rel=rel) for f, rel in zip(files, relative)]
    inputs = set(files)
    for job in jobs:
        if job["dst"] in inputs or (comparison and comparison_of(job["dst"]) in inputs):
            raise SystemExit(f"error: the output {utils.shown(job['dst'])} would overwrite an input: choose another --output")
    reasons = [name_too_long(job["dst"], comparison) for job in jobs]
    return ([job for job, reason in zip(jobs, reasons) if reason is None],
            [(job["src"], reason) for job, reason in zip(jobs, reasons) if reason is not None])


def remove_stale_temporaries(jobs, output_dir):
    """Remove what killed runs left in the folders this run writes: temporary files of outputs,
    thumbnails and records (utils.remove_stale_temporaries)."""
    output_dir = Path(output_dir).resolve()
    folders = {output_dir} | {job["dst"].parent for job in jobs}
    folders |= {pages.thumbnail_path(output_dir, job["name"], "output").parent for job in jobs}
    for folder in folders:
        if folder.is_dir():
            utils.remove_stale_temporaries(folder)


def describe_run(run, args):
    """What makes the outputs what they are: the checkpoint file and the settings -> (tag, record)."""
    ckpt = Path(args.checkpoint).resolve()
    record = {"checkpoint": {"file": utils.shown(ckpt), "bytes": ckpt.stat().st_size, "modified_ns": ckpt.stat().st_mtime_ns},
              "settings": {"task": run.cfg.task, "size": run.size, "norm_stats": run.norm_stats,  # and the task's own:
                           **run.task.generate_settings(args),  # another task's flags are refused (load)
                           "test_dropout": run.test_dropout, "seed": args.seed, "precision": run.precision}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16], record


def differences(old, new):
    """What differs between two records, in a few words: 'checkpoint, --size 64 -> 128'."""
    if old is None:
        return "made by something else (no record)"
    said = ["another checkpoint file"] if old["checkpoint"] != new["checkpoint"] else []
    said += [f"--{k.replace('_', '-')} {old['settings'].get(k)} -> {v}" for k, v in new["settings"].items()
             if old["settings"].get(k) != v]
    return ", ".join(said) or "another record"


def sort_jobs(jobs, run, args):
    """-> (jobs to make, jobs whose output is done and only needs scores, records to keep). An existing
    output of another checkpoint or settings is refused, unless --overwrite: the folder never mixes them."""
    record_file = Path(args.output) / RECORD
    records = json.loads(record_file.read_text()) if record_file.is_file() else {}
    if args.overwrite:
        return jobs, [], {}
    todo, done, foreign = [], [], collections.Counter()
    for job in jobs:
        exists = os.path.exists(job["dst"])  # False, not an error, for a name too long for the folder's file system
        tag = images.png_text(job["dst"], TAG_KEY) if exists else None
        if not exists:
            todo.append(job)
        elif tag == run.tag:  # done, unless its side files changed since
            (done if (images.png_text(job["dst"], SIDES_KEY) or "") == job["sides"] else todo).append(job)
        else:
            foreign[tag] += 1
    if foreign:
        tag, count = foreign.most_common(1)[0]
        raise SystemExit(f"error: {sum(foreign.values())} outputs in {args.output} are not this checkpoint's with these "
                         f"settings ({count}: {differences(records.get(tag), run.record)}): choose another --output, "
                         f"or --overwrite to redo every image")
    return todo, done, records


# ----------------------------------------------------------------------------------------------------
# The run: the checkpoint and the settings.


def load(args):
    """The run: args with their defaults resolved from the checkpoint, G on its device, the checkpoint's
    configuration (a Namespace, as the tasks take it), what the task read for it. Exits with one line for
    what cannot work."""
    try:
        G, cfg = tasks.load_generator(args.checkpoint)  # the generator alone, memory-mapped
    except ValueError as e:
        raise SystemExit(f"error: cannot read checkpoint {e}")
    device = utils.pick_device(args.device)
    run = SimpleNamespace(**{**vars(args), "cfg": argparse.Namespace(**cfg), "task": tasks.TASKS[cfg["task"]],
                             "device": device, "G": G})
    run.size = args.size or cfg["image_size"]
    run.norm_stats = cfg.get("norm_stats", "running") if args.norm_stats == "auto" else args.norm_stats
    run.test_dropout = args.test_dropout or cfg.get("test_dropout", "off")
    run.precision, run.precision_why = utils.resolve_precision(args.precision, device)
    tasks.refuse_other_tasks_flags(run.task, args, "generate_flags", "the checkpoint")
    run.task.setup_generation(run)
    run.G = G.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format)
    run.tag, run.record = describe_run(run, args)
    return run


# ----------------------------------------------------------------------------------------------------


def main(args):
    run = load(args)
    jobs, failed = plan_jobs(args.input, args.output, args.save_comparison, args.reference)
    sides = add_side_files(jobs, run)
    remove_stale_temporaries(jobs, args.output)
    todo, done, records = sort_jobs(jobs, run, args)
    old_scores = previous_scores(args) if args.reference and not args.overwrite else {}
    rescored = [dict(job, score=True) for job in done if args.reference and job["image"] not in old_scores]
    utils.write_json(Path(args.output) / RECORD, {**records, run.tag: run.record})
    work = todo + rescored
    worker_count = min(workers.default_workers(run.device) if args.workers is None else args.workers, len(work))
    if worker_count == 1:  # a lone worker would only keep this process waiting: this process does the work
        worker_count = 0
    print(f"{run.cfg.task}: {len(jobs) + len(failed)} images in {args.input}, {len(done)} already done, "
          f"{len(todo)} to do" + (f", {len(rescored)} to score" if rescored else "")
          + (f", {len(failed)} with names too long" if failed else "") + "".join(f", {n} with {what}" for what, n in
          sides.items()) + f" -> {args.output} ({run.device}, "
          f"{run.task.network_input_shape(run)}, {run.precision}: {run.precision_why}, {worker_count} worker processes)")
    # Chunks of a batch at most, and as many as the workers at least: 12 images on 2 workers are 6 + 6.
    chunk = max(1, min(args.batch_size, math.ceil(len(work) / max(1, worker_count))))
    chunks = [work[i:i + chunk] for i in range(0, len(work), chunk)]
    scores, written = [], 0
    stop_on_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)  # a scheduler's stop: as Ctrl-C
    try:
        with tqdm(total=len(work), unit="img", dynamic_ncols=True) as bar:
            for records_ in workers.map_chunks(process, chunks, run, worker_count, load, args):
                for record in records_:
                    if "how" in record:
                        tqdm.write(f"{utils.shown(record['src'])}: {record['how']}")
                    if "error" in record:
                        failed.append((record["src"], record["error"]))
                    else:
                        written += not record.get("score")
                    if "scores" in record:
                        scores.append(record["scores"])
                bar.update(len(records_))
    except KeyboardInterrupt:
        print(f"\nInterrupted: {written} of {len(todo)} images written to {args.output}. Rerun the same command to "
              f"go on: finished outputs are kept and skipped, unfinished ones were not written.", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, stop_on_sigterm)
    rows = []
    if args.reference:
        done_images = {job["image"] for job in done}
        rows = [row for image, row in old_scores.items() if image in done_images] + scores
        report_scores(rows, args)
    write_page(jobs, rows, run, args)
    for src, reason in failed:
        print(f"failed: {utils.shown(src)}: {reason}", file=sys.stderr)
    print(f"Done: {written} written to {args.output}, {len(done)} already there, {len(failed)} failed.")
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------------
# Scores against the true images (--reference): the metrics of training's validation (the task's file),
# here at the outputs' full resolution and one image at a time, so that memory follows the largest image.
# OUTPUT/scores.csv holds a row for every output of the folder that has a reference, whichever run wrote it.

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
    """The reference image for the input `rel` (a.jpg): reference_dir/a.<any image extension>. Stats a
    few names instead of listing the folder, which would be quadratic in a folder of 100k images."""
    for ext in sorted(images.IMAGE_EXTENSIONS):
        for name in (rel.stem + ext, rel.stem + ext.upper()):
            if os.path.isfile(reference_dir / rel.parent / name):  # os.path's: False for a name too long
                return reference_dir / rel.parent / name
    return None


def score_output(item, out, hole, run):
    """One output (and its hole, or None) -> a scores row {"image": its path in --output, metric: value}
    or, when it cannot be scored, {"image", "error"}."""
    image = item["image"]
    reference = find_reference(Path(run.reference), item["rel"])
    if reference is None:
        return {"image": image, "error": f"no {utils.shown(item['rel'].stem)}.* in {Path(run.reference) / item['rel'].parent}"}
    try:
        true = images.load_image(reference)
        pages.save_thumbnail(true, pages.thumbnail_path(run.output, item["name"], "reference"))
        return {"image": image, **score_pair(run.cfg.task, out, np.array(true), hole)}
    except Exception as e:  # a broken reference file raises whatever PIL raises
        return {"image": image, "error": f"{utils.shown(reference)}: {utils.one_line(e)}"}


def write_page(jobs, rows, run, args):
    """OUTPUT/index.html over every output of the folder, with its scores if it has some."""
    scores = {row["image"]: row for row in rows if "error" not in row}
    entries = [dict(image=job["image"], name=job["name"], src=job["src"], scores=scores.get(job["image"]),
                    reference=find_reference(Path(args.reference), job["rel"]) if job["image"] in scores else None)
               for job in jobs if os.path.exists(job["dst"])]
    pages.outputs_page(args.output, entries, run.task.score, f"{run.cfg.task}: {args.input} -> {args.output}")


def previous_scores(args):
    """{output: its scores row} of earlier runs into this folder against the same --reference."""
    summary = Path(args.output) / "scores.json"
    if not summary.is_file() or json.loads(summary.read_text()).get("reference") != utils.shown(Path(args.reference).resolve()):
        return {}
    return {row["image"]: {k: v if k == "image" else float(v) for k, v in row.items()}
            for row in utils.read_csv(Path(args.output) / "scores.csv")}


def report_scores(rows, args):
    """OUT/scores.csv (a row per scored output) and OUT/scores.json (the means); print the means, the
    output beside each baseline."""
    scored = sorted((row for row in rows if "error" not in row), key=lambda row: row["image"])
    metrics = [k for k in scored[0] if k != "image"] if scored else []
    means = {k: float(np.mean([row[k] for row in scored])) for k in metrics}
    utils.write_scores(scored, {"mean": means}, Path(args.output) / "scores.csv", Path(args.output) / "scores.json",
                       images=len(scored), not_scored=len(rows) - len(scored),
                       reference=utils.shown(Path(args.reference).resolve()))
    for row in rows:
        if "error" in row:
            print(f"not scored: {row['image']}: {row['error']}", file=sys.stderr)
    baselines = sorted({k.split("_")[1] for k in means if k.startswith("baseline_")})
    print(f"Scores of {len(scored)} images -> {Path(args.output) / 'scores.csv'}")
    print(f"{'mean of':24}{'output':>10}" + "".join(f"{b:>10}" for b in baselines))
    for metric in (k for k in means if not k.startswith("baseline_")):
        cells = [means[metric]] + [means.get(f"baseline_{b}_{metric}") for b in baselines]
        print(f"{metric:24}" + "".join(f"{c:10.4g}" if c is not None else f"{'':10}" for c in cells))


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
