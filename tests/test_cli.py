"""The command lines and the pages: grouped --help with every default shown, both index.html pages, and
every command that README.md and docs/ show accepted by its script."""
import argparse
import html.parser
import re
import shlex
import sys
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

import classes
import demo
import generate
import pages
import train
import utils
from conftest import REPO, run_generate, tiny_args, write_image

sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.mark.parametrize("parser, groups", [
    (train.get_parser(), ["data", "model", "objective", "schedule", "test time", "logging", "system",
                          "resuming and stopping", "other jobs (then stop)"]),
    (generate.get_parser(), ["images", "test time", "system"]),
])
def test_help_is_grouped_and_shows_every_default(parser, groups):
    text = parser.format_help()
    assert all(f"\n{group}:" in text for group in groups)
    formatter = parser._get_formatter()
    for action in parser._actions:
        flags = not action.option_strings or action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction)
        if action.required or flags or action.dest == "help" or action.dest in ("resume", "score", "export"):
            continue
        assert "default" in formatter._get_help_string(action), action.option_strings


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


def check_page(page):
    """Every picture the page shows and every file it links exists beside it; nothing is on the network."""
    text = page.read_text()
    assert "://" not in text  # no http, https or file URL: nothing fetched, and the folder can move
    links = Links()
    links.feed(text)
    for target in links.images + links.links:
        assert (page.parent / unquote(target)).exists(), target
    return links


def test_the_run_page_shows_the_run(tmp_path):
    train.main(tiny_args(tmp_path, "--val-every", 4))
    links = check_page(tmp_path / "run" / "index.html")
    assert links.images[:2] == ["plot.png", "samples/step_00000008.png"] and "samples/step_00000000.png" in links.images
    text = (tmp_path / "run" / "index.html").read_text()
    assert "Test split" in text and "Configuration" in text and "Finished" in text


def test_the_outputs_page_shows_every_output_worst_first(tmp_path):
    train.main(tiny_args(tmp_path, "--stop-at", 1))
    for i in range(4):
        write_image(tmp_path / "in" / "sub" / f"{i}.jpg", size=(60 + 10 * i, 40), seed=i)
        write_image(tmp_path / "ref" / "sub" / f"{i}.png", size=(60 + 10 * i, 40), seed=i + (i % 2))
    run_generate(tmp_path / "run" / "last.pt", tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref")
    links = check_page(tmp_path / "out" / "index.html")
    assert len([i for i in links.images if i.endswith(".output.jpg")]) == 4
    assert len([i for i in links.images if i.endswith(".reference.jpg")]) == 4
    outputs = [link for link in links.links if link.startswith("sub/") and link.endswith(".png")]
    psnr = {row["image"]: float(row["psnr"]) for row in utils.read_csv(tmp_path / "out" / "scores.csv")}
    assert outputs == sorted(psnr, key=psnr.get)  # the worst first


def test_a_thumbnail_made_in_bands_is_the_whole_images(tmp_path):
    rng = np.random.default_rng(0)
    for width, height in [(1200, 1700), (257, 1001), (3000, 17), (5, 3)]:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        thumbnail, row = pages.Thumbnail(width, height), 0
        while row < height:  # bands of any height, as the tasks' finish_image yields them
            band = int(rng.integers(1, 300))
            thumbnail.add(pixels[row:row + band])
            row += band
        thumbnail.save(tmp_path / "bands.jpg")
        whole = Image.fromarray(pixels).reduce(pages.reduction(width, height))
        assert np.array_equal(np.concatenate(thumbnail.rows), np.asarray(whole))


SCRIPTS = {"train.py": train.get_parser, "generate.py": generate.get_parser, "classes.py": classes.reorganize_parser,
           "demo.py": demo.get_parser}


def commands(text):
    """Every `python X.py ...` or `torchrun ... X.py ...` command in a markdown text -> (script, its arguments)."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        for match in re.finditer(r"(?:python3? |torchrun (?:--\S+ )*)((?:benchmarks/)?\w+\.py)((?: [^|&;#`]*)?)", line):
            yield match[1], shlex.split(match[2])


def test_every_command_in_the_docs_is_accepted():
    import aspect_study
    import bench
    import ema_study
    import hints_study
    import precision_study
    import real_drawings
    import upsample_study
    studies = {module: getattr(module, "get_parser") for module in (aspect_study, bench, ema_study, hints_study,
                                                                   precision_study, real_drawings, upsample_study)}
    scripts = {**SCRIPTS, **{f"benchmarks/{m.__name__}.py": parser for m, parser in studies.items()}}
    checked = 0
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for script, args in commands(doc.read_text()):
            assert script in scripts, f"{doc.name}: {script}"
            try:
                scripts[script]().parse_args(args)
            except SystemExit as e:  # --help exits 0
                assert e.code == 0, f"{doc.name}: python {script} {shlex.join(args)} is refused by its parser"
            checked += 1
    assert checked >= 20
