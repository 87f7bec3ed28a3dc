"""What the test files share: tiny fake dataset trees in the real layouts, tiny training runs, untrained
tiny generators, and generate.py run in this process."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import generate  # noqa: E402
import tasks  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402


def write_image(path, size=(48, 40), seed=0, mode="RGB", fmt=None):
    """A small random-colour image with some structure (so JPEG and resizing behave as on real data)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 256, 3)
    array = ((base + 90 * np.sin(xx[..., None] / (3 + seed % 5)) + 60 * (yy[..., None] > h // 2)) % 256).astype(np.uint8)
    img = Image.fromarray(array, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def comics_tree(tmp_path):
    """raw_panel_images/<book>/<page>_<panel>.jpg, 6 books, with a zero-byte, a truncated and a fake JPEG."""
    root = tmp_path / "raw_panel_images"
    for book in range(6):
        for page in (0, 2, 10):
            for panel in range(2):
                write_image(root / str(book) / f"{page}_{panel}.jpg", size=(40 + 7 * panel, 36 + 5 * page), seed=book * 100 + page * 10 + panel)
    (root / "0" / "3_0.jpg").write_bytes(b"")
    truncate(write_image(root / "1" / "3_0.jpg", size=(60, 60), seed=7))
    (root / "2" / "3_0.jpg").write_text("not a jpeg")
    (root / "notes").mkdir()
    (root / "3" / "Thumbs.db").write_text("stray")
    return root


def organized_tree(root, train=8, val=4, test=2):
    """root/<split>/<i>.jpg, the layout that classes.py writes, with this many images in each split."""
    for split, count in (("train", train), ("val", val), ("test", test)):
        for i in range(count):
            write_image(root / split / f"{i}.jpg", size=(40, 36), seed=100 * len(split) + i)
    return root


# A run of a few seconds: tiny networks at 32 px on 16 demo images, 4 steps a pass, one pass at the
# constant lr and one of decay (8 steps).
TINY = ["--image-size", "32", "--load-size", "36", "--ngf", "8", "--ndf", "8", "--val-images", "8",
        "--demo-images", "16", "--batch-size", "4", "--epochs", "1", "--epochs-decay", "1"]


def tiny_flags(out, *extra, task="colorize"):
    """train.py's command line for a tiny run into the folder out; a flag in extra wins over TINY's."""
    flags = ["--task", task, "--out", str(out), *TINY] + (["--bottleneck", "32"] if task == "inpaint" else [])
    return flags + [str(e) for e in extra]


def tiny_args(tmp_path, *extra, task="colorize"):
    """train.main's arguments for a tiny run into tmp_path/run, with no worker processes."""
    return train.get_parser().parse_args(tiny_flags(tmp_path / "run", "--workers", 0, *extra, task=task))


@pytest.fixture(scope="session")
def untrained(tmp_path_factory):
    """task -> an untrained tiny generator of the task saved as train.py saves it (colorize: the U-Net,
    inpaint: the Context Encoder), with BatchNorm running statistics that are not the identity, as after
    training."""
    root = tmp_path_factory.mktemp("untrained")
    paths = {}
    for task, netG in [("colorize", "unet"), ("inpaint", "context-encoder")]:
        torch.manual_seed(0)
        G = tasks.build_generator(task, netG, 32, 4, "batch", 8)
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2)
        cfg = dict(task=task, netG=netG, image_size=32, ngf=4, norm="batch", bottleneck=8, fill="white", patch=16,
                   overlap=0, norm_stats="running", dropout="off")
        paths[task] = root / f"{task}.pt"
        utils.save_checkpoint({"G": G.state_dict(), "config": cfg}, paths[task])
    return paths


def run_generate(checkpoint, src, dst, *flags):
    """generate.py on src into dst in this process, with no worker processes (a flag in flags wins) -> its
    exit status."""
    args = ["--checkpoint", str(checkpoint), "--input", str(src), "--output", str(dst), "--workers", "0"]
    return generate.main(generate.get_parser().parse_args(args + [str(f) for f in flags]))
