"""What the benchmark scripts share: the repo's modules on the path, progress lines and markdown tables,
fabricated images, an untrained generator of a paper's size, generate.py run in-process, quietly, and the
held-out set of real drawings (prepare).
Each script imports this module and no other script."""
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repo's flat modules, from any folder

import colorize  # noqa: E402
import generate  # noqa: E402
import runfolder  # noqa: E402
import tasks  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

JPEG_QUALITY = 90
GRAIN = 4.0  # std of the paper grain added to the drawings: flat colour compresses (and decodes) too well
DRAWINGS = 8  # distinct drawings per fabricated folder
GENERATOR_TREE_IMAGES = 1  # the paper preset's configuration needs a tree, not a large one


def log(message):  # progress on stderr: stdout holds only the tables
    print(message, file=sys.stderr, flush=True)


def table(headers, rows, align):
    """A markdown table with padded columns; align has one letter per column, l(eft) or r(ight)."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)) + " |"

    rule = "|" + "|".join("-" * (w + 2) if a == "l" else "-" * (w + 1) + ":" for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def describe_device(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "CPU")
    return f"{name} ({os.cpu_count()} cores)"


# ----------------------------------------------------------------------------------------------------
# Input images, fabricated


def fabricate(folder, sizes, draw, seed):
    """Drawings of `draw` (a task's demo drawing) at each (W, H), with paper grain, saved as JPEGs. Drawing a
    page takes longer than anything timed here: DRAWINGS distinct drawings are cycled, each file with its
    own shift of the grain, so that no two files are the same."""
    folder.mkdir(parents=True)
    rng, drawings, grains = np.random.default_rng(seed), {}, {}
    for i, (w, h) in enumerate(sizes):
        key = (i % DRAWINGS, w, h)
        if key not in drawings:
            drawings[key] = np.asarray(draw(seed + i, max(w, h)).resize((w, h), Image.BICUBIC), dtype=np.float32)
        if (w, h) not in grains:
            grains[w, h] = rng.normal(0, GRAIN, (h, w, 3)).astype(np.float32)
        grain = np.roll(grains[w, h], tuple(rng.integers(0, (h, w))), axis=(0, 1))
        pixels = np.clip(drawings[key] + grain + 0.5, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=JPEG_QUALITY)
    return sorted(folder.glob("*.jpg"))


# ----------------------------------------------------------------------------------------------------
# The paper preset, and a generator of its size


def paper_tree(task, tmp, images):
    """An organized tree (train/ of `images` drawings, val/ of 2) at the task's load size, on which
    train.py runs its paper preset: tmp/tree-TASK-IMAGES, made once."""
    root = tmp / f"tree-{task}-{images}"
    if not root.exists():
        side, draw = tasks.TASKS[task].paper["load_size"], tasks.TASKS[task].draw
        fabricate(root / "train", [(side, side)] * images, draw, 0)
        fabricate(root / "val", [(side, side)] * 2, draw, 10**6)
    return root


def paper_config(task, tree):
    """The configuration train.py resolves for the task's paper preset on `tree`."""
    flags = ["--task", task, "--data", str(tree), "--out", str(tree.parent / "unused")]
    return runfolder.new_run_config(train.get_parser().parse_args(flags))[0]


def paper_generator(task, tmp):
    """An untrained generator of the task's paper size, its configuration, and its checkpoint as train.py
    writes it (tmp/paper-TASK.pt, what generate.py reads): generate.py's time does not depend on the
    weights."""
    cfg = paper_config(task, paper_tree(task, tmp, GENERATOR_TREE_IMAGES))
    torch.manual_seed(0)
    G = tasks.generator_for(vars(cfg))
    checkpoint = tmp / f"paper-{task}.pt"
    utils.save_checkpoint({"G": G.state_dict(), "config": vars(cfg)}, checkpoint)
    return G, cfg, checkpoint


# ----------------------------------------------------------------------------------------------------
# generate.py


def generate_quietly(flags):
    """generate.main with its progress and tables swallowed; raises with their end if it fails."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = generate.main(generate.get_parser().parse_args([str(f) for f in flags]))
    if status != 0:
        raise RuntimeError(f"generate.py failed:\n{output.getvalue()[-2000:]}")


# ----------------------------------------------------------------------------------------------------
# Real drawings: a held-out set made from Debian's tuxpaint-stamps-default (about 800 PNG stamps,
# clip-art cartoons and photos under the GPL), installed with apt when missing (as root; they are no
# dependency of the repo), cropped to what they draw, put on white and split by a hash of the file name.

STAMPS = Path("/usr/share/tuxpaint/stamps")
PACKAGE = "tuxpaint-stamps-default"
MIN_CHROMA = 12.0  # mean ab radius over the drawn pixels: below it a stamp is black-and-white line art
SPLIT_PERCENT = {"test": 15, "val": 10}  # of the files, by a hash of each file's path; the rest trains
MARGIN = 0.04  # white kept around the drawing, as a share of its longer side
WHITE = 250  # a pixel this bright in every channel is the page, not the drawing


def stamp_files():
    """The stamps' PNG files, installing the package with apt when they are missing."""
    if not STAMPS.is_dir():
        print(f"Installing {PACKAGE} with apt (the stamps are no dependency of the repo) ...")
        subprocess.run(["apt-get", "install", "-y", "-q", PACKAGE], check=True)
    return sorted(STAMPS.rglob("*.png"))


def on_white(path, side):
    """A stamp cropped to what it draws (plus MARGIN), on white, at a shorter side of `side` px; None if
    it draws nothing."""
    img = Image.open(path).convert("RGBA")
    box = img.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if box is None:
        return None
    pad = round(MARGIN * max(box[2] - box[0], box[3] - box[1]))
    box = (max(0, box[0] - pad), max(0, box[1] - pad), min(img.width, box[2] + pad), min(img.height, box[3] + pad))
    page = Image.new("RGBA", img.size, "white")
    page.alpha_composite(img)
    page = page.crop(box).convert("RGB")
    scale = side / min(page.size)
    return page.resize((max(side, round(page.width * scale)), max(side, round(page.height * scale))), Image.LANCZOS)


def mean_chroma(img):
    """Mean ab radius (Lab units) over the pixels that are not page white."""
    rgb = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    lab = colorize.rgb_to_lab(rgb)[0]
    drawn = torch.from_numpy((np.asarray(img) < WHITE).any(axis=2))
    return float(lab[1:].norm(dim=0)[drawn].mean()) if drawn.any() else 0.0


def split_of(relative):
    bucket = int(hashlib.sha1(str(relative).encode()).hexdigest(), 16) % 100
    if bucket < SPLIT_PERCENT["test"]:
        return "test"
    return "val" if bucket < SPLIT_PERCENT["test"] + SPLIT_PERCENT["val"] else "train"


def prepare(root, side):
    """root/set/{train,val,test}/NAME.png, and the test split for inpainting (prepare_holes); reused when
    root/set.json says it was made with the same side."""
    about = root / "set.json"
    if about.is_file() and json.loads(about.read_text()).get("side") == side:
        prepare_holes(root, side)
        return json.loads(about.read_text())
    shutil.rmtree(root / "set", ignore_errors=True)
    counts = {"train": 0, "val": 0, "test": 0, "without colour": 0, "empty": 0}
    for path in stamp_files():
        relative = path.relative_to(STAMPS)
        img = on_white(path, side)
        if img is None:
            counts["empty"] += 1
            continue
        if mean_chroma(img) < MIN_CHROMA:
            counts["without colour"] += 1
            continue
        split = split_of(relative)
        name = "_".join(relative.with_suffix(".png").parts)
        (root / "set" / split).mkdir(parents=True, exist_ok=True)
        img.save(root / "set" / split / name)
        counts[split] += 1
    about.write_text(json.dumps({"side": side, "stamps": str(STAMPS), **counts}, indent=1))
    prepare_holes(root, side)
    print(f"Prepared {root / 'set'}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts


def prepare_holes(root, side):
    """The test split for inpainting, as the Context Encoder is tested: each image's center square
    (root/holes_truth/NAME.png), the same with a white square of half its side over the center
    (root/holes/NAME.png), and that square as a mask (root/hole_mask.png), the same for every image, so
    that every model fills and is scored on the same pixels."""
    if (root / "hole_mask.png").is_file():
        return
    hole = side // 2
    box = ((side - hole) // 2, (side - hole) // 2, (side - hole) // 2 + hole, (side - hole) // 2 + hole)
    for folder in ("holes", "holes_truth"):
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir()
    for path in sorted((root / "set" / "test").iterdir()):
        img = Image.open(path).convert("RGB")
        left, top = (img.width - side) // 2, (img.height - side) // 2
        square = img.crop((left, top, left + side, top + side))
        square.save(root / "holes_truth" / path.name)
        square.paste((255, 255, 255), box)
        square.save(root / "holes" / path.name)
    mask = Image.new("L", (side, side), 0)
    mask.paste(255, box)
    mask.save(root / "hole_mask.png")
