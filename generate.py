"""Colorize or inpaint a folder of images with a checkpoint from train.py, at the images' own resolution.

    python generate.py --checkpoint runs/colorize/last.pt --input scans/ --output colored/
    python generate.py --checkpoint runs/inpaint/best.pt --input photos/ --output repaired/ --save-comparison
    python generate.py --checkpoint last.pt --input gray/ --output colored/ --reference originals/   # + scores.csv
    python generate.py --checkpoint last.pt --input photo.jpg --output out/ --mask hole.png --device cuda

The task, the network and its resolution come from the checkpoint. --input is a file or a folder
(walked recursively); outputs mirror the relative paths in --output as PNG. Inputs are never written:
an --output inside --input is refused. Unreadable images are reported and skipped, and the exit status
is 1 if any failed.

Colorize: the network sees the gray image resized to its resolution; the predicted ab channels are
upsampled to the original size and joined to the ORIGINAL L channel, so the line art stays sharp.
Inpaint: the square around the hole is processed at the network size, and the prediction is pasted back
only inside the hole: every other pixel is bit-identical to the input.
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import model
import tasks
import utils

WHITE_THRESHOLD = 230  # a JPEG-compressed white square stays above this in every channel
MIN_SQUARE_FRACTION = 0.1  # a white square smaller than this share of the image side is no hole
SQUARE_FILL = 0.97  # share of white pixels inside a detected square
EDGE_GROW_THRESHOLD = 200  # JPEG ringing: rows around the square this bright belong to the hole


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--input", required=True, help="an image or a folder of images (recursive)")
    p.add_argument("--output", required=True, help="folder for the PNG results (never inside --input)")
    p.add_argument("--size", type=int, help="network resolution (default: the training size)")
    p.add_argument("--mask", default="auto", help="inpaint: 'auto' (a white square near the center is the "
                   "hole, else the center is blanked), 'center', or a mask image (white = hole)")
    p.add_argument("--save-comparison", action="store_true", help="also write <name>.comparison.png [input | output]")
    p.add_argument("--overwrite", action="store_true", help="redo images whose output exists")
    p.add_argument("--reference", type=reference_folder, help="folder of the true images (same relative paths, "
                   "any extension): score the outputs written into OUTPUT/scores.csv and scores.json")
    p.add_argument("--batch-size", type=int, default=8, help="images per network batch")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast precision (auto: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster on GPUs and CPUs)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="image decoding processes")
    return p


# ----------------------------------------------------------------------------------------------------
# Where the hole is (inpaint)


def find_white_square(rgb):
    """The white square painted around the center of an (H, W, 3) uint8 image, as (top, left, h, w), or
    None if there is none (a white shirt or background is not a square hole)."""
    white = rgb.min(axis=2) >= WHITE_THRESHOLD
    H, W = white.shape
    cy, cx = H // 2, W // 2
    if not white[cy, cx]:
        return None

    def run(line, start, step):  # how far the white run from `start` goes in one direction
        i = start
        while 0 <= i + step < len(line) and line[i + step]:
            i += step
        return i

    top, bottom = run(white[:, cx], cy, -1), run(white[:, cx], cy, 1)
    left, right = run(white[cy], cx, -1), run(white[cy], cx, 1)
    h, w = bottom - top + 1, right - left + 1
    touches_border = top == 0 or left == 0 or bottom == H - 1 or right == W - 1
    if touches_border or min(h, w) < MIN_SQUARE_FRACTION * min(H, W) or not 0.8 <= h / w <= 1.25:
        return None
    if white[top:bottom + 1, left:right + 1].mean() < SQUARE_FILL:
        return None
    # JPEG blurs the square's edge: take in the neighbouring rows and columns that are still near-white.
    bright = rgb.min(axis=2) >= EDGE_GROW_THRESHOLD
    while top > 0 and bright[top - 1, left:right + 1].mean() > 0.9:
        top -= 1
    while bottom < H - 1 and bright[bottom + 1, left:right + 1].mean() > 0.9:
        bottom += 1
    while left > 0 and bright[top:bottom + 1, left - 1].mean() > 0.9:
        left -= 1
    while right < W - 1 and bright[top:bottom + 1, right + 1].mean() > 0.9:
        right += 1
    return top, left, bottom - top + 1, right - left + 1


def center_hole(H, W, hole_fraction):
    """The training hole on a photo: the center of its largest centered square."""
    side = max(1, round(min(H, W) * hole_fraction))
    return (H - side) // 2, (W - side) // 2, side, side


def find_hole(rgb, mask_arg, mask_image, hole_fraction):
    """-> (hole mask (H, W) bool, description for the log)."""
    H, W = rgb.shape[:2]
    if mask_image is not None:
        if mask_image.shape != (H, W):
            raise ValueError(f"the mask is {mask_image.shape[1]}x{mask_image.shape[0]}, the image {W}x{H}")
        return mask_image, f"mask file, {int(mask_image.sum())} px"
    box = find_white_square(rgb) if mask_arg == "auto" else None
    how = "white square"
    if box is None:
        box, how = center_hole(H, W, hole_fraction), "no white square: blanked the center" if mask_arg == "auto" else "center"
    top, left, h, w = box
    hole = np.zeros((H, W), dtype=bool)
    hole[top:top + h, left:left + w] = True
    return hole, f"{how} {w}x{h} at ({left}, {top})"


def context_box(hole, image_size, net_hole):
    """The square region (x0, y0, x1, y1), in image pixels, that maps onto the network's input so that
    the hole's bounding box lands on the network's hole (net_hole px at the center)."""
    ys, xs = np.nonzero(hole)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * image_size / net_hole
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


# ----------------------------------------------------------------------------------------------------
# Reading images in worker processes


class Inputs(Dataset):
    """Decodes an image and prepares its network input; a failure becomes a record, not an exception."""

    def __init__(self, jobs, cfg, size, mask_arg):
        self.jobs, self.cfg, self.size, self.mask_arg = jobs, cfg, size, mask_arg

    def __len__(self):
        return len(self.jobs)

    def __getitem__(self, i):
        src, dst = self.jobs[i]
        try:
            return dict(src=src, dst=dst, **self.prepare(src))
        except Exception as e:  # a bad file is reported with its reason, the others go on
            return dict(src=src, dst=dst, error=utils.one_line(e))

    def prepare(self, src):
        img = utils.load_image(src)
        rgb = np.array(img)  # writable: torch refuses to wrap read-only arrays
        if self.cfg["task"] == "colorize":
            small = img.resize((self.size, self.size), Image.BICUBIC, reducing_gap=3.0)
            return dict(rgb=rgb, net=utils.pil_to_tensor(small))
        mask_image = None
        if self.mask_arg not in ("auto", "center"):
            mask_image = np.asarray(utils.load_image(self.mask_arg).convert("L")) >= 128
        net_hole = self.cfg["patch"] - 2 * self.cfg["overlap"]
        hole, how = find_hole(rgb, self.mask_arg, mask_image, net_hole / self.cfg["image_size"])
        if not hole.any():
            raise ValueError("the mask has no hole")
        x0, y0, x1, y1 = context_box(hole, self.size, net_hole * self.size // self.cfg["image_size"])
        # Edge padding, so that a context square reaching past the border still has pixels to resize.
        pad = max(0, math.ceil(max(-x0, -y0, x1 - rgb.shape[1], y1 - rgb.shape[0])))
        padded = Image.fromarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        box = (x0 + pad, y0 + pad, x1 + pad, y1 + pad)
        small = padded.resize((self.size, self.size), Image.BICUBIC, box=box, reducing_gap=3.0)
        small_hole = Image.fromarray(np.pad(hole, pad).astype(np.uint8) * 255).resize((self.size, self.size), Image.BOX, box=box)
        return dict(rgb=rgb, hole=hole, how=how, context=(x0, y0, x1, y1), net=utils.pil_to_tensor(small),
                    net_hole=torch.from_numpy(np.asarray(small_hole) >= 128))


def as_list(batch):
    return batch


# ----------------------------------------------------------------------------------------------------
# From the network's output back to full resolution


def full_resolution_colorize(item, ab_small, device):
    """Predicted ab (2, s, s) upsampled to the original size and joined to the original L."""
    rgb = torch.from_numpy(item["rgb"]).to(device).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
    L = utils.rgb_to_lab(rgb.float() / 255)[:, :1]
    ab = F.interpolate(ab_small[None].float() * utils.AB_SCALE, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
    out = utils.lab_to_rgb(torch.cat([L, ab], dim=1))[0]
    return (out * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def full_resolution_inpaint(item, repaired_small, device):
    """Sample the repaired network image (3, s, s) at the hole's pixels and paste it there only."""
    rgb, hole = item["rgb"], item["hole"]
    x0, y0, x1, y1 = item["context"]
    ys, xs = np.nonzero(hole)
    top, left, bottom, right = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
    # grid_sample coordinates in [-1, 1] of the network image, for each pixel center of the hole's box.
    gx = (torch.arange(left, right, device=device) + 0.5 - x0) / (x1 - x0) * 2 - 1
    gy = (torch.arange(top, bottom, device=device) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()  # (1, h, w, 2)
    patch = F.grid_sample(repaired_small[None].float(), grid, mode="bicubic", padding_mode="border", align_corners=False)
    patch = ((patch[0] + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    out = rgb.copy()
    region = hole[top:bottom, left:right]
    out[top:bottom, left:right][region] = patch[region]
    return out


# ----------------------------------------------------------------------------------------------------


def plan_jobs(input_path, output_dir, overwrite):
    """(source, destination) pairs, refusing any destination that is or would contain an input."""
    input_path, output_dir = Path(input_path).resolve(), Path(output_dir).resolve()
    if not input_path.exists():
        raise SystemExit(f"error: --input {input_path} does not exist")
    root = input_path if input_path.is_dir() else input_path.parent
    if input_path.is_dir() and (output_dir == input_path or input_path in output_dir.parents):
        raise SystemExit(f"error: --output {output_dir} is inside --input {input_path}: inputs are never written over")
    files = utils.list_images(input_path)
    relative = [f.relative_to(root).with_suffix(".png") for f in files]
    taken = {}
    for rel in relative:
        taken[rel] = taken.get(rel, 0) + 1
    # a.jpg and a.png in one folder would both become a.png: name those a_jpg.png, a_png.png
    jobs = [(f, output_dir / (rel if taken[rel] == 1 else rel.with_name(f"{f.stem}_{f.suffix[1:]}.png")))
            for f, rel in zip(files, relative)]
    inputs = set(files)
    for _, dst in jobs:
        if dst in inputs:
            raise SystemExit(f"error: the output {dst} would overwrite an input: choose another --output")
    todo = [(s, d) for s, d in jobs if overwrite or not d.exists()]
    return files, todo


def main(args):
    device = utils.pick_device(args.device)
    checkpoint = utils.load_checkpoint(args.checkpoint, device="cpu")
    cfg = checkpoint["config"]
    precision = utils.resolve_precision(args.precision, device)
    size = args.size or cfg["image_size"]
    G = model.build_generator(cfg["task"], cfg["netG"], cfg["image_size"], cfg["ngf"], cfg["norm"], cfg["bottleneck"])
    G.load_state_dict(checkpoint["G"])
    # Eval mode: BatchNorm uses its running statistics and dropout is off, as in most reimplementations
    # (the Pix2Pix paper keeps dropout on at test time for stochastic outputs).
    G = G.to(device).eval()
    if args.channels_last:
        G = G.to(memory_format=torch.channels_last)
    if cfg["netG"] == "context-encoder" and size != cfg["image_size"]:
        raise SystemExit(f"error: the Context Encoder only works at its training size {cfg['image_size']}")
    if size % 2 ** len(getattr(G, "downs", [])) or size < 2 ** len(getattr(G, "downs", [])):
        raise SystemExit(f"error: --size {size} must be a multiple of {2 ** len(G.downs)} for this U-Net")

    files, jobs = plan_jobs(args.input, args.output, args.overwrite)
    print(f"{cfg['task']}: {len(files)} images in {args.input}, {len(files) - len(jobs)} already done, "
          f"{len(jobs)} to do -> {args.output} ({device}, {size}x{size})")
    loader = DataLoader(Inputs(jobs, cfg, size, args.mask), batch_size=args.batch_size, num_workers=args.workers, collate_fn=as_list)
    failed, scores = [], []
    bar = tqdm(total=len(jobs), unit="img", dynamic_ncols=True)
    for batch in loader:
        good = [item for item in batch if "error" not in item]
        failed += [(item["src"], item["error"]) for item in batch if "error" in item]
        if good:
            outputs = run_network(G, good, cfg, device, precision, args.channels_last)
            for item, out in zip(good, outputs):
                try:
                    utils.save_array_png(out, item["dst"])
                    if args.save_comparison:
                        strip = np.concatenate([item["rgb"], out], axis=1)
                        utils.save_array_png(strip, item["dst"].with_suffix(".comparison.png"))
                    if args.reference:
                        scores.append(score_output(item, out, args.reference, args.output, cfg["task"]))
                except OSError as e:
                    failed.append((item["src"], f"cannot write {item['dst']}: {utils.one_line(e)}"))
                if "how" in item:
                    tqdm.write(f"{item['src']}: {item['how']}")
        bar.update(len(batch))
    bar.close()
    if args.reference:
        report_scores(scores, args.output)
    for src, reason in failed:
        print(f"failed: {src}: {reason}", file=sys.stderr)
    print(f"Done: {len(jobs) - len(failed)} written to {args.output}, {len(failed)} failed.")
    return 1 if failed else 0


@torch.no_grad()
def run_network(G, items, cfg, device, precision, channels_last):
    """One batch through G -> full-resolution uint8 outputs."""
    images = torch.stack([item["net"] for item in items]).to(device)
    if cfg["task"] == "colorize":
        x, _ = utils.colorize_pair(images)
    else:
        hole = torch.stack([item["net_hole"] for item in items]).to(device)[:, None].float()
        masked = utils.fill_hole(images.float() / 127.5 - 1, hole, cfg["fill"])
        x = masked if cfg["netG"] == "context-encoder" else torch.cat([masked, hole], dim=1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with utils.autocast(device, precision):
        fake = G(x).float()
    if cfg["task"] == "colorize":
        return [full_resolution_colorize(item, fake[i], device) for i, item in enumerate(items)]
    s = x.shape[-1]
    boxes = torch.tensor([utils.center_box(s, s // 2)] * len(items))
    repaired = utils.inpaint_output(x, fake, boxes, hole, cfg["netG"])
    return [full_resolution_inpaint(item, repaired[i], device) for i, item in enumerate(items)]


# ----------------------------------------------------------------------------------------------------
# Scores against the true images (--reference): the metrics of training's validation (tasks.py), here
# at the outputs' full resolution and one image at a time, so that memory follows the largest image.

def reference_folder(path):
    if not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a folder")
    return path


def as_batch(rgb):
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def score_pair(task, output_rgb, reference_rgb, hole=None):
    """Scores of one output against its reference, (H, W, 3) uint8 each (inpaint: and the (H, W) bool
    hole that was filled) -> {metric: float}."""
    if output_rgb.shape != reference_rgb.shape:
        (h, w), (H, W) = reference_rgb.shape[:2], output_rgb.shape[:2]
        raise ValueError(f"the reference is {w}x{h}, the output {W}x{H}")
    if task == "inpaint" and (hole is None or hole.shape != output_rgb.shape[:2] or not hole.any()):
        raise ValueError("inpaint scores need the output's hole")
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


def score_output(item, out, reference_dir, output_dir, task):
    """One written output -> a scores row {"image": its path in output_dir, metric: value} or, when it
    cannot be scored, {"image", "error"}."""
    rel = Path(item["dst"]).resolve().relative_to(Path(output_dir).resolve())
    reference = find_reference(Path(reference_dir), rel)
    if reference is None:
        return {"image": str(rel), "error": f"no {rel.stem}.* in {Path(reference_dir) / rel.parent}"}
    try:
        return {"image": str(rel), **score_pair(task, out, np.array(utils.load_image(reference)), item.get("hole"))}
    except Exception as e:  # a broken reference file raises whatever PIL raises
        return {"image": str(rel), "error": f"{reference}: {utils.one_line(e)}"}


def write_scores(rows, out_dir):
    """OUT/scores.csv (a row per scored image) and OUT/scores.json (the means) -> the means."""
    scored = [row for row in rows if "error" not in row]
    utils.write_csv(Path(out_dir) / "scores.csv", scored)
    metrics = [k for k in scored[0] if k != "image"] if scored else []
    means = {k: float(np.mean([row[k] for row in scored])) for k in metrics}
    summary = {"images": len(scored), "not_scored": len(rows) - len(scored), "mean": means}
    (Path(out_dir) / "scores.json").write_text(json.dumps(summary, indent=2))
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
