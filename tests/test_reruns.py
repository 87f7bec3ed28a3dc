"""generate.py run again, stopped, or pointed at odd folders: every input gets its own output, a rerun goes
on where a run stopped, never mixes outputs of two checkpoints or settings, and its scores cover every
output of the folder."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import generate
import images
import utils
import workers
from conftest import REPO, run_generate, write_image


@pytest.fixture
def checkpoint(untrained):
    """The untrained tiny colorize generator."""
    return untrained["colorize"]


def test_names_that_would_meet_each_get_their_own_output(tmp_path, checkpoint):
    for i, name in enumerate(["a.jpg", "a.png", "a_jpg.png", "b.jpg", "c.png"]):
        write_image(tmp_path / "in" / name, seed=i)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--save-comparison") == 0
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert outputs == ["a.jpg.comparison.png", "a.jpg.png", "a.png.comparison.png", "a.png.png", "a_jpg.comparison.png",
                       "a_jpg.png", "b.comparison.png", "b.png", "c.comparison.png", "c.png"]


def test_whole_names_are_kept_until_nothing_meets():
    """a.jpg.png is an input whose own output would be a.jpg.png, the whole-name output of a.jpg."""
    names = generate.output_names([Path("a.jpg"), Path("a.png"), Path("a.jpg.png")], comparison=False)
    assert {str(k): str(v) for k, v in names.items()} == {"a.jpg": "a.jpg.png", "a.png": "a.png.png",
                                                          "a.jpg.png": "a.jpg.png.png"}


def test_rerun_goes_on_and_scores_cover_every_output(tmp_path, checkpoint):
    for i in range(2):
        write_image(tmp_path / "in" / f"{i}.png", seed=i)
        write_image(tmp_path / "ref" / f"{i}.png", seed=i)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out") == 0  # no --reference yet
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png")}
    write_image(tmp_path / "in" / "2.png", seed=2)
    write_image(tmp_path / "ref" / "2.png", seed=2)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref") == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.png") if p.name in before} == before
    rows = utils.read_csv(tmp_path / "out" / "scores.csv")
    assert sorted(r["image"] for r in rows) == ["0.png", "1.png", "2.png"]
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["images"] == 3
    # Again with one more: the earlier rows are kept, the new one added.
    write_image(tmp_path / "in" / "3.png", seed=3)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref") == 0
    assert len(utils.read_csv(tmp_path / "out" / "scores.csv")) == 3  # 3.png has no reference
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["not_scored"] == 1


def test_rerun_with_other_settings_or_checkpoint_never_mixes(tmp_path, checkpoint):
    write_image(tmp_path / "in" / "a.png")
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out") == 0
    made = (tmp_path / "out" / "a.png").read_bytes()
    record = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert [r["checkpoint"]["file"] for r in record.values()] == [str(checkpoint.resolve())]
    with pytest.raises(SystemExit, match=r"not this checkpoint's with these settings \(1: --size 32 -> 64\)"):
        run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--size", 64)
    with pytest.raises(SystemExit, match=r"--aspect squash -> keep"):
        run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--aspect", "keep")
    with pytest.raises(SystemExit, match="--mask is for --task inpaint"):  # a flag that would change nothing
        run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--mask", "center")
    other = tmp_path / "other.pt"
    other.write_bytes(checkpoint.read_bytes())
    with pytest.raises(SystemExit, match="another checkpoint file"):
        run_generate(other, tmp_path / "in", tmp_path / "out")
    assert (tmp_path / "out" / "a.png").read_bytes() == made
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--size", 64, "--overwrite") == 0
    assert (tmp_path / "out" / "a.png").read_bytes() != made


def test_a_checkpoint_that_diverged_is_refused_before_any_image(tmp_path, checkpoint):
    ckpt = torch.load(checkpoint, weights_only=True)
    next(t for t in ckpt["G"].values() if t.is_floating_point())[0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    write_image(tmp_path / "in" / "a.png")
    with pytest.raises(SystemExit, match="not all finite"):
        run_generate(tmp_path / "nan.pt", tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_an_output_that_cannot_be_written_is_refused_before_the_network(tmp_path, checkpoint, monkeypatch, where):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "file").write_text("notes")
    monkeypatch.setattr(generate, "run_network", lambda *a: pytest.fail("the network ran"))
    output = tmp_path / "file" if where == "file" else tmp_path / "file" / "out"
    with pytest.raises(SystemExit, match="is a file, not a folder" if where == "file" else "cannot write into --output"):
        run_generate(checkpoint, tmp_path / "in", output)


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--batch-size", "-3"], ["--workers", "-2"], ["--size", "0"],
                                   ["--size", "-32"], ["--max-pixels", "0"]])
def test_numbers_that_make_no_sense_are_refused_in_one_line(tmp_path, checkpoint, capsys, flags):
    with pytest.raises(SystemExit) as refused:
        run_generate(checkpoint, tmp_path, tmp_path / "out", *flags)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and len(err.strip().splitlines()) == 1 and flags[0] in err, err
    assert not (tmp_path / "out").exists()


def test_two_writers_of_one_output_never_share_a_temporary_file(tmp_path):
    rows = np.zeros((4, 5, 3), np.uint8)
    with images.PngWriter(tmp_path / "a.png", 5, 4) as first, images.PngWriter(tmp_path / "a.png", 5, 4) as second:
        assert first.tmp != second.tmp
        first.write(rows)
        second.write(rows + 9)
    assert np.asarray(Image.open(tmp_path / "a.png")).max() in (0, 9) and len(list(tmp_path.iterdir())) == 1


@pytest.mark.slow
def test_ctrl_c_says_where_it_stopped_and_a_rerun_goes_on(tmp_path, checkpoint):
    for i in range(40):
        write_image(tmp_path / "in" / f"{i:02d}.png", size=(300, 200), seed=i)
    cmd = [sys.executable, "generate.py", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
           "--output", str(tmp_path / "out"), "--batch-size", "1", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while len(list((tmp_path / "out").glob("*.png"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Interrupted" in err and "Rerun the same command" in err and "Traceback" not in err, err
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out") == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 40


def test_default_workers_follow_the_device():
    assert workers.default_workers(torch.device("cuda")) == 0
    assert workers.default_workers(torch.device("cpu")) == workers.cpu_count()
