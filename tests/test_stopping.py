"""Stopping is saving: SIGTERM to the whole process group, a full disk, a run that diverges, and the
one-line refusals of numbers that make no sense, all on train.py's real entry points."""
import errno
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import score
import train
import utils
from conftest import REPO, tiny_args, tiny_flags


def finite(path):
    ckpt = torch.load(path, weights_only=True)
    return all(torch.isfinite(t).all() for net in ("G", "D") for t in ckpt[net].values() if t.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("name, flags", [
    ("SIGINT", ["--workers", "1"]),  # Ctrl-C to train.py alone, with one data-loader worker
    ("SIGTERM", []),  # what a cluster scheduler sends to the whole process group, with the default workers
], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_middle_of_training_saves_and_stops(tmp_path, name, flags):
    """The step finishes, last.pt is written, the exit is clean."""
    out = tmp_path / "run"
    cmd = [sys.executable, "train.py", *tiny_flags(out, "--demo-images", 100000, "--batch-size", 2, *flags)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not (out / "samples" / "step_00000000.png").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # now inside the epoch, the workers loading
    if name == "SIGINT":
        proc.send_signal(signal.SIGINT)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, name), output  # as a process that the signal ended
    assert f"Stopped by {name}" in output and "Traceback" not in output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] > 0 and ckpt["epoch"] == 0 and ckpt["epoch_step"] == ckpt["step"]


def test_a_crash_before_any_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(score, "validate", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train.main(tiny_args(tmp_path))
    assert "no checkpoint was written yet" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_full_disk_is_one_line_and_leaves_the_last_checkpoint(tmp_path, monkeypatch):
    train.main(tiny_args(tmp_path, "--stop-at", 2))
    last = tmp_path / "run" / "last.pt"
    before = last.read_bytes()

    def full_disk(state, f):
        f.write(b"x" * 100_000)  # part of it written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(utils.torch, "save", full_disk)
    with pytest.raises(SystemExit) as stopped:
        train.main(train.get_parser().parse_args(["--resume", str(last), "--stop-at", "4"]))
    message = str(stopped.value.code)
    assert f"cannot write {last}: No space left on device (the disk is full)" in message
    assert f"the last checkpoint is {last} (step 2)" in message
    assert last.read_bytes() == before and not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]


def test_divergence_stops_with_an_error_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    """Losses turn NaN at step 4 of a run that saves every step: the run stops with an error, last.pt
    stays at step 3 and finite, best.pt is finite."""
    calls = {"n": 0}
    real = train.weighted_mean

    def nan_from_step_4(err, weight):
        calls["n"] += 1
        loss = real(err, weight)
        return loss * math.nan if calls["n"] >= 4 else loss

    monkeypatch.setattr(train, "weighted_mean", nan_from_step_4)
    with pytest.raises(SystemExit, match=r"training diverged: the weights at step 4 are not finite.*step 3"):
        train.main(tiny_args(tmp_path, "--save-every-min", 0, "--val-every", 2, "--stop-at", 8))
    run = tmp_path / "run"
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 3 and finite(run / "last.pt") and finite(run / "best.pt")


def test_the_diverging_settings_of_a_user_are_an_error(tmp_path):
    with pytest.raises(SystemExit, match="training diverged"):
        train.main(tiny_args(tmp_path, "--lr", "1e6", "--lambda-rec", "1e38"))
    run = tmp_path / "run"
    assert all(finite(run / name) for name in ("last.pt", "best.pt") if (run / name).exists())


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--batch-size", "-1"], ["--lr", "-1"], ["--beta1", "1.5"],
                                   ["--ngf", "0"], ["--val-images", "0"], ["--val-every", "0"], ["--val-every", "-1"],
                                   ["--epochs", "-1"], ["--epochs-decay", "-1"], ["--stop-at", "0"],
                                   ["--lambda-rec", "-5"], ["--save-every-min", "-1"], ["--lr", "nan"]])
def test_numbers_that_make_no_sense_are_refused_in_one_line(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as refused:
        train.main(train.get_parser().parse_args(["--out", str(tmp_path / "run"), *flags]))
    err = capsys.readouterr().err
    assert refused.value.code == 2 and len(err.strip().splitlines()) == 1 and flags[0] in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task, flags, message", [
    ("colorize", ["--netG", "context-encoder"], "colorize uses --netG unet"),
    ("colorize", ["--netD", "context"], "colorize uses --netD patch"),
    ("inpaint", ["--netG", "unet", "--netD", "context"], "use --netD patch with --netG unet"),
    ("colorize", ["--load-size", "16"], "smaller than --image-size"),
    ("colorize", ["--image-size", "48"], "power of two"),
    ("colorize", ["--epochs", "0", "--epochs-decay", "0"], "no step"),
    ("inpaint", ["--norm", "instance"], "no spatial statistics"),
    ("inpaint", ["--norm-stats", "image"], "no per-image statistics"),
])
def test_settings_that_cannot_work_are_refused_in_one_line(tmp_path, task, flags, message):
    with pytest.raises(SystemExit, match=message):
        train.main(tiny_args(tmp_path, *flags, task=task))
    assert not (tmp_path / "run").exists()
