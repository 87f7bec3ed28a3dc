"""python demo.py: held-out demo drawings written as files, as generate.py takes them, never over a file."""
import numpy as np
import pytest
from PIL import Image

import demo
import utils
from conftest import run_generate


def write_drawings(*flags):
    demo.main(demo.get_parser().parse_args([str(f) for f in flags]))


@pytest.mark.parametrize("task, mode", [("colorize", "L"), ("inpaint", "RGB")])
def test_it_writes_held_out_drawings_and_their_true_images(tmp_path, task, mode):
    write_drawings("--task", task, "--out", tmp_path / "in", "--count", 3, "--size", 40, "--reference", tmp_path / "ref")
    names = [f"{'panel' if task == 'colorize' else 'face'}-{demo.DEMO_TEST_ID + i}.png" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == names
    for name in names:
        x, y = Image.open(tmp_path / "in" / name), Image.open(tmp_path / "ref" / name)
        assert (x.mode, x.size, y.mode, y.size) == (mode, (40, 40), "RGB", (40, 40))
    if task == "inpaint":  # the center half is white, and nothing else changed
        x, y = (np.asarray(Image.open(tmp_path / folder / names[0])) for folder in ("in", "ref"))
        hole = np.zeros((40, 40), bool)
        hole[10:30, 10:30] = True
        assert (x[hole] == 255).all() and np.array_equal(x[~hole], y[~hole])


def test_it_never_overwrites_a_file(tmp_path, capsys):
    write_drawings("--out", tmp_path / "in", "--count", 2, "--size", 16)
    first = {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    write_drawings("--out", tmp_path / "in", "--count", 3, "--size", 16)  # a rerun, one more: only that one is new
    assert "2 of the files were there already" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in first} == first and len(list((tmp_path / "in").iterdir())) == 3

    mine = tmp_path / "in" / f"panel-{demo.DEMO_TEST_ID + 1}.png"
    mine.write_bytes(b"someone else's")
    with pytest.raises(SystemExit, match="is already there and is not this drawing: nothing was written"):
        write_drawings("--out", tmp_path / "in", "--count", 5, "--size", 16)
    assert mine.read_bytes() == b"someone else's" and len(list((tmp_path / "in").iterdir())) == 3
    with pytest.raises(SystemExit, match="is not a folder"):
        write_drawings("--out", mine)


@pytest.mark.parametrize("task", ["colorize", "inpaint"])
def test_generate_takes_them(tmp_path, untrained, task):
    write_drawings("--task", task, "--out", tmp_path / "in", "--count", 2, "--size", 64, "--reference", tmp_path / "ref")
    assert run_generate(untrained[task], tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref") == 0
    scores = utils.read_csv(tmp_path / "out" / "scores.csv")
    assert len(scores) == 2 and (tmp_path / "out" / "index.html").exists()
    for row in scores:
        assert Image.open(tmp_path / "out" / row["image"]).size == (64, 64)
