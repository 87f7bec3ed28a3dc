"""A run folder is claimed by one process at a time: runs started at the same moment get folders of their
own, a run resumed twice goes on once, a set-up that fails or is interrupted leaves nothing that blocks
the same command, and Ctrl-C or SIGTERM stop the final scoring of the test split, which --resume finishes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import runfolder
import score
import train
from conftest import REPO, organized_tree, tiny_args, tiny_flags, write_image


def one_line(code):
    """A SystemExit's message, asserted to be one line."""
    assert isinstance(code, str) and "\n" not in code.strip(), code
    return code


def train_py(*flags):
    """train.py with this command line, in this process -> its exit status."""
    return train.main(train.get_parser().parse_args([str(f) for f in flags]))


@pytest.mark.slow
def test_six_runs_started_at_once_get_six_folders(tmp_path):
    """Six train.py with the default --out, started together: six folders, each with the configuration
    (here the seed) of the run that wrote it."""
    flags = [f for f in tiny_flags("x", "--workers", 0, "--stop-at", 1) if f not in ("--out", "x")]
    procs = [subprocess.Popen([sys.executable, str(REPO / "train.py"), *flags, "--seed", str(seed)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in range(6)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name for f in folders] == ["colorize-demo"] + [f"colorize-demo-{n}" for n in range(2, 7)]
    seeds = []
    for folder in folders:
        seed = json.loads((folder / "config.json").read_text())["seed"]
        assert torch.load(folder / "last.pt", weights_only=True)["config"]["seed"] == seed
        assert not (folder / runfolder.LOCK).exists()
        seeds.append(seed)
    assert sorted(seeds) == list(range(6))


@pytest.mark.slow
def test_a_run_resumed_twice_goes_on_once(tmp_path):
    """While one process goes on with last.pt, a second --resume of it refuses in one line naming that
    process; killed with -9, the first leaves the folder free for the next --resume."""
    train.main(tiny_args(tmp_path, "--demo-images", 100000, "--batch-size", 2, "--stop-at", 2))
    run = tmp_path / "run"
    cmd = [sys.executable, "train.py", "--resume", str(run / "last.pt")]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and runfolder.lock_holder(run) == "another process":
            time.sleep(0.1)
        assert runfolder.lock_holder(run).startswith(f"process {first.pid} on ")
        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and second.stdout == "", second.stdout + second.stderr
        assert second.stderr.strip() == (f"error: {run} is in use by {runfolder.lock_holder(run)}, which runs "
                                          f"train.py there: resume {run / 'last.pt'} once it ends")
        assert first.poll() is None  # still going on
    finally:
        first.kill()
        first.wait()
    train_py("--resume", run / "last.pt", "--stop-at", 3)  # kill -9 released the lock
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 3


def test_a_folder_in_use_is_refused_naming_its_process(tmp_path):
    """Held by another run (here by this process, through another open file): a resume of the run in it,
    and a new run into it, are refused in one line."""
    train.main(tiny_args(tmp_path, "--stop-at", 2))
    claims = [runfolder.Claim.take(tmp_path / name) for name in ("run", "new")]
    try:
        for flags, then in ((["--resume", tmp_path / "run" / "last.pt"], "once it ends"),
                            (tiny_flags(tmp_path / "new"), "choose another --out")):
            with pytest.raises(SystemExit) as refused:
                train_py(*flags)
            message = one_line(refused.value.code)
            assert f"is in use by process {os.getpid()} on " in message and message.endswith(then)
    finally:
        for claim in claims:
            claim.abandon()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2
    assert not (tmp_path / "new").exists() and not (tmp_path / "run" / runfolder.LOCK).exists()


def test_without_flock_the_lock_file_is_the_claim(tmp_path, monkeypatch):
    """Where there is no fcntl (Windows), the LOCK file's existence is the claim: a second claim fails, the
    refusal says how to free a folder whose holder was killed, and a released claim frees the folder."""
    monkeypatch.setattr(runfolder, "fcntl", None)
    claim = runfolder.Claim.take(tmp_path / "run")
    try:
        assert claim.created and claim.fresh and runfolder.Claim.take(tmp_path / "run") is None
        with pytest.raises(SystemExit) as refused:
            train_py(*tiny_flags(tmp_path / "run"))
        message = one_line(refused.value.code)
        assert f"is in use by process {os.getpid()} on " in message
        assert message.endswith(f"choose another --out (if it no longer runs, remove {tmp_path / 'run' / runfolder.LOCK})")
    finally:
        claim.abandon()
    assert not (tmp_path / "run").exists()
    again = runfolder.Claim.take(tmp_path / "run")
    assert again is not None and (tmp_path / "run" / runfolder.LOCK).exists()
    again.release()
    assert not (tmp_path / "run" / runfolder.LOCK).exists()


@pytest.mark.parametrize("default_out", [False, True], ids=["--out", "default"])
def test_a_failed_set_up_leaves_the_folder_usable(tmp_path, monkeypatch, default_out):
    """Unreadable validation images stop the set-up after config.json and samples/ are written: they go,
    and so does the folder it made; the same command then starts in the same folder."""
    monkeypatch.chdir(tmp_path)
    tree = organized_tree(tmp_path / "tree", train=4, val=2)
    for path in (tree / "val").iterdir():
        path.write_bytes(b"")
    flags = tiny_flags(tmp_path / "run", "--workers", 0, "--data", tree, "--batch-size", 2, "--stop-at", 1)
    if default_out:
        flags = [f for f in flags if f not in ("--out", str(tmp_path / "run"))]
    with pytest.raises(SystemExit, match="none of the 2 validation images can be read"):
        train_py(*flags)
    left = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0] != "tree"]
    assert [p.as_posix() for p in left] == (["runs"] if default_out else [])  # runs/: where all default folders go
    for i, path in enumerate(sorted((tree / "val").iterdir())):
        write_image(path, seed=i)
    train_py(*flags)
    out = tmp_path / ("runs/colorize" if default_out else "run")
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_ctrl_c_during_set_up_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    def ctrl_c(*args):  # after config.json and samples/ are written
        raise KeyboardInterrupt

    monkeypatch.setattr(score, "save_samples", ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        train.main(tiny_args(tmp_path))
    assert stopped.value.code == 130
    assert capsys.readouterr().err.strip() == "Stopped by Ctrl-C during set-up, before any step: nothing was written."
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_final_scoring_stops_it_and_resume_finishes_it(tmp_path, monkeypatch, capsys, sig):
    """The signal comes while the first of three batches of the test split is scored: the scoring stops
    after it, says how to finish, exits 128 + the signal; --resume of last.pt scores and writes the page."""
    real_score, real_run = score.score_test_split, score.run_at_test_time
    sent = []

    def run_and_signal(*args, **kwargs):
        if not sent:
            os.kill(os.getpid(), sig)
            sent.append(time.time())
        return real_run(*args, **kwargs)

    def score_with_a_signal(*args, **kwargs):
        monkeypatch.setattr(score, "run_at_test_time", run_and_signal)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(score, "score_test_split", score_with_a_signal)
    run = tmp_path / "run"
    assert train.main(tiny_args(tmp_path, "--val-images", 40)) == 128 + sig
    assert time.time() - sent[0] < 10
    out = capsys.readouterr().out
    assert f"Stopped by {signal.Signals(sig).name} while scoring the test split" in out
    assert f"--resume {run / 'last.pt'} scores it" in out
    assert not (run / "test_scores.json").exists() and "Finished" not in (run / "index.html").read_text()
    monkeypatch.undo()
    assert train_py("--resume", run / "last.pt") is None
    assert json.loads((run / "test_scores.json").read_text())["images"] == 40
    assert "Finished: 8 steps" in (run / "index.html").read_text()


def test_a_hand_edited_config_is_named_kept_aside_and_not_used(tmp_path, capsys):
    train.main(tiny_args(tmp_path, "--stop-at", 2))
    config = tmp_path / "run" / "config.json"
    edited = {**json.loads(config.read_text()), "lr": 0.1, "val_every": 3}
    config.write_text(json.dumps(edited))
    capsys.readouterr()
    train_py("--resume", tmp_path / "run" / "last.pt", "--stop-at", 4)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [f"warning: {config} differs from the configuration of {tmp_path / 'run' / 'last.pt'}, which "
                        f"is used (lr 0.1 in the file, 0.0002 in the checkpoint; val_every 3 in the file, 4 in the "
                        f"checkpoint. Change --val-every on the command line instead); the file is kept as "
                        f"{config}.edited"]
    assert json.loads((tmp_path / "run" / "config.json.edited").read_text()) == edited
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]
    assert saved["lr"] == 0.0002 and saved["val_every"] == 4 and json.loads(config.read_text())["lr"] == 0.0002
    capsys.readouterr()
    train_py("--resume", tmp_path / "run" / "last.pt", "--stop-at", 5)  # the file is the checkpoint's again: no word
    assert "warning" not in capsys.readouterr().err
    config.write_text("{broken")
    train_py("--resume", tmp_path / "run" / "last.pt", "--stop-at", 6)
    assert "differs from the configuration of" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.json.edited").read_text() == "{broken"
