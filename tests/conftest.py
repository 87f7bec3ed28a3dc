"""Shared fixtures: tiny fake dataset trees in the real layouts, and tiny training runs."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402


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


def tiny_args(tmp_path, *extra, task="colorize"):
    """train.py flags for a run of a few seconds: tiny networks at 32 px, no worker processes."""
    base = ["--task", task, "--out", str(tmp_path / "run"), "--image-size", "32", "--load-size", "36",
            "--ngf", "8", "--ndf", "8", "--workers", "0", "--val-images", "8", "--demo-images", "16",
            "--batch-size", "4", "--epochs", "1", "--epochs-decay", "1"]
    if task == "inpaint":
        base += ["--bottleneck", "32"]
    return train.get_parser().parse_args(base + [str(e) for e in extra])
