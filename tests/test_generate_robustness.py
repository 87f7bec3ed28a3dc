"""generate.py against what kills or cramps it: a main process killed with kill -9 (its workers go with it,
and the next run removes what they were writing), file names near the 255-byte limit, and an outputs
page whose links work for names in any encoding."""
import html.parser
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote_to_bytes

import pytest
import torch

import train
import utils
import workers
from conftest import REPO, run_generate, tiny_args, write_image

WORKERS_GONE_S = 15  # what the out-of-memory killer's victim may leave running: nothing, after this


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A colorization checkpoint of a one-step run."""
    root = tmp_path_factory.mktemp("run")
    train.main(tiny_args(root, "--stop-at", 1))
    return root / "run" / "last.pt"


def temporaries(folder):
    return sorted(p for p in Path(folder).rglob("*") if utils.TEMPORARY.fullmatch(p.name))


# ----------------------------------------------------------------------------------------------------
# kill -9 of the main process

# generate.py whose workers, at their first images, open the temporary file of an output, say so in
# MARKS/<pid> and wait: a run killed at a known point, the workers in the middle of their work. The
# patches are made on import, so that spawned workers, which import this file again, have them too.
DRIVER = """
import os, sys, time
sys.path.insert(0, {repo!r})
import generate, utils, workers

def hold(jobs, run):
    utils.temporary_beside(jobs[0]["dst"])
    open(os.path.join({marks!r}, str(os.getpid())), "w").close()
    time.sleep(300)

generate.process = hold
workers.cpu_count = lambda: {cores}
workers.PR_SET_PDEATHSIG = {option}
if __name__ == "__main__":
    sys.exit(generate.main(generate.get_parser().parse_args(sys.argv[1:])))
"""


@pytest.mark.slow
@pytest.mark.parametrize("cores, option", [
    (2, workers.PR_SET_PDEATHSIG),  # 1 thread per worker: forked
    (4, workers.PR_SET_PDEATHSIG),  # 2 threads per worker: spawned
    (2, -1),  # an option prctl refuses: the thread that watches the parent
], ids=["forked", "spawned", "watched"])
def test_workers_die_with_a_killed_main_process(tmp_path, checkpoint, cores, option):
    for i in range(4):
        write_image(tmp_path / "in" / f"{i}.png", seed=i)
    marks = tmp_path / "marks"
    marks.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=str(REPO), marks=str(marks), cores=cores, option=option))
    command = [sys.executable, str(driver), "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
               "--output", str(tmp_path / "out"), "--workers", "2"]
    with open(tmp_path / "log.txt", "wb") as log:
        main = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:
            assert main.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()
            time.sleep(0.05)
            workers = [int(p.name) for p in marks.iterdir()]
        main.send_signal(signal.SIGKILL)
        main.wait()
        deadline = time.monotonic() + WORKERS_GONE_S
        while any(map(utils.process_exists, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(utils.process_exists, workers))
    finally:  # only after a failure is anything left: no process of the test outlives it
        for pid in [main.pid] * (main.poll() is None) + list(filter(utils.process_exists, workers)):
            os.kill(pid, signal.SIGKILL)
    assert len(temporaries(tmp_path / "out")) == 2  # what the killed workers were writing
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out") == 0
    assert temporaries(tmp_path / "out") == []
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"{i}.png" for i in range(4)]


def test_a_rerun_removes_only_the_temporary_files_of_gone_writers(tmp_path, checkpoint):
    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "in" / "sub" / "b.png", seed=1)
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # a process id that no process has now
    out = tmp_path / "out"
    stale = [out / f".a.png.{gone.pid}-0123abcd.tmp", out / "sub" / f".b.png.{gone.pid}-89abcdef.tmp",
             out / ".thumbnails" / "sub" / f".b.png.output.jpg.{gone.pid}-00000000.tmp",
             out / f".generate.json.{gone.pid}-ffffffff.tmp"]
    kept = [out / f".a.png.{os.getpid()}-0123abcd.tmp",  # a running writer's: another run into this folder
            out / ".a.png.tmp", out / "notes.tmp", out / f".a.png.{gone.pid}-xyz.tmp", out / f"a.png.{gone.pid}-0123abcd.tmp"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert run_generate(checkpoint, tmp_path / "in", out) == 0
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# ----------------------------------------------------------------------------------------------------
# Long names and names in any encoding

def name(length, ending=".png", char="a"):
    """A file name of `length` bytes: `char` repeated (a 2-byte character where it must), then `ending`."""
    stem = length - len(ending)
    wide = len(char.encode())
    return char * (stem // wide) + "b" * (stem % wide) + ending


def written_count(out):
    return int(re.search(r"Done: (\d+) written", out)[1])


def test_long_names_are_written_and_a_name_too_long_fails_alone(tmp_path, checkpoint, capsys):
    legal = [name(n) for n in (226, 236, 245, 251, 254, 255)] + [name(255, ".jpg", "j"), name(255, char="é"), "short.png"]
    for i, file in enumerate(legal):
        write_image(tmp_path / "in" / file, seed=i)
        write_image(tmp_path / "ref" / file, seed=i)
    pair = [name(255, ".jpg", "p"), name(255, ".png", "p")]  # -> p...p.jpg.png and p...p.png.png: 259 bytes
    for file in pair:
        write_image(tmp_path / "in" / file)
    assert all(len(os.fsencode(file)) <= 255 for file in legal + pair)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref") == 1
    out, err = capsys.readouterr()
    made = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert made == sorted(Path(file).with_suffix(".png").name for file in legal)
    assert written_count(out) == len(made)
    failures = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 2 and all("file name would be 259 bytes" in line for line in failures)
    assert "Traceback" not in err and temporaries(tmp_path / "out") == []
    assert len(utils.read_csv(tmp_path / "out" / "scores.csv")) == len(legal)
    assert check_page(tmp_path / "out") == {"output": len(legal), "thumbnail": 3 * len(legal)}


def test_a_comparison_name_too_long_fails_its_image_alone(tmp_path, checkpoint, capsys):
    for file in (name(245), "short.png"):
        write_image(tmp_path / "in" / file)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--save-comparison") == 1
    out, err = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["short.comparison.png", "short.png"]
    assert written_count(out) == 1 and "comparison's file name would be 256 bytes" in err


class Links(html.parser.HTMLParser):
    """Every href and src of a page."""

    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        self.targets += [value for key, value in attrs if key in ("href", "src")]


def check_page(out):
    """Every link of OUTPUT/index.html names an existing file by its bytes -> how many outputs and thumbnails."""
    links = Links()
    links.feed((out / "index.html").read_text())
    files = [os.path.join(os.fsencode(out), unquote_to_bytes(target)) for target in links.targets]
    assert all(os.path.isfile(file) for file in files), [f for f in files if not os.path.isfile(f)]
    inside = [os.path.relpath(f, os.fsencode(out)) for f in files if not os.path.relpath(f, os.fsencode(out)).startswith(b"..")]
    return {"output": sum(f.endswith(b".png") for f in inside),
            "thumbnail": sum(f.startswith(b".thumbnails/") for f in inside)}


def test_page_links_reach_files_whose_names_are_not_utf8(tmp_path, checkpoint):
    names = [b"caf\xe9.png", b"d\xfcr/\xe0 b.png", b"d\xfcr/" + b"\xe9" * 240 + b".png"]  # Latin-1, as old archives
    for i, file in enumerate(names):
        write_image(tmp_path / "in" / os.fsdecode(file), seed=i)
        write_image(tmp_path / "ref" / os.fsdecode(file), seed=i + 1)
    assert run_generate(checkpoint, tmp_path / "in", tmp_path / "out", "--reference", tmp_path / "ref") == 0
    assert check_page(tmp_path / "out") == {"output": 3, "thumbnail": 9}
    links = Links()
    links.feed((tmp_path / "out" / "index.html").read_text())
    assert {unquote_to_bytes(target) for target in links.targets} >= set(names)  # the outputs, by their own bytes


def stopped_by_a_signal(jobs, run):
    """A chunk that a stop signal interrupts: start_worker's handler raises SystemExit in it."""
    sys.exit(1)


def test_a_worker_stopped_in_a_chunk_ends_without_a_traceback(capfd):
    """A stop signal in the middle of a chunk ends the worker at once and quietly: its SystemExit is not
    sent back to the main process as the chunk's result (which would leave the worker waiting on a pipe
    that the main process then closes, and print a traceback), and the main process sees the chunk's
    worker gone, as it would for one that the system killed."""
    run = SimpleNamespace(device=torch.device("cpu"))
    records = list(workers.map_chunks(stopped_by_a_signal, [[{"src": "a"}], [{"src": "b"}]], run, 2, None, None))
    assert sorted(r["src"] for chunk in records for r in chunk) == ["a", "b"]
    assert all(r["error"] == workers.KILLED for chunk in records for r in chunk)
    assert "Traceback" not in capfd.readouterr().err
