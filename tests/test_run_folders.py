"""train.py's run folders belong to their run: no flag, resume or mishap writes into another run's files or
destroys a newer checkpoint, and --score never overwrites scores of another mode."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import runfolder
import train
from conftest import tiny_args


def snapshot(folder):
    """Every file below folder with its bytes: equal snapshots mean an untouched folder."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def resume(*flags):
    return train.main(train.get_parser().parse_args([str(f) for f in flags]))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run of 4 steps (validations at 2 and 4), copied by each test that changes it."""
    root = tmp_path_factory.mktemp("finished")
    train.main(tiny_args(root, "--stop-at", 4, "--val-every", 2))
    return root / "run"


def copy_run(finished_run, where):
    shutil.copytree(finished_run, where)
    return where


def test_resume_into_another_runs_folder_is_refused(tmp_path, finished_run):
    a, b = copy_run(finished_run, tmp_path / "a"), copy_run(finished_run, tmp_path / "b")
    before = snapshot(b)
    with pytest.raises(SystemExit, match="holds another run"):
        resume("--resume", a / "last.pt", "--out", b, "--stop-at", 6)
    assert snapshot(b) == before


@pytest.mark.parametrize("leftover", ["last.pt", "best.pt", "metrics.csv", "config.json", "samples"])
def test_new_run_refuses_a_folder_with_any_file_of_a_run(tmp_path, finished_run, monkeypatch, leftover):
    """A new run never overwrites an old one: it is refused, and the next free folder is named, for --out
    given relative or absolute."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    source = finished_run / leftover
    (shutil.copytree if source.is_dir() else shutil.copy)(source, out / leftover)
    before = snapshot(out)
    with pytest.raises(SystemExit, match=f"already holds a run \\({leftover}\\)"):
        train.main(tiny_args(tmp_path, "--out", "run"))
    assert snapshot(out) == before
    for base in (Path("run"), out):
        claim = runfolder.claim_free_folder(base)
        assert claim.folder == base.with_name("run-2")
        claim.abandon()


def test_out_naming_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("notes")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        train.main(tiny_args(tmp_path))
    assert (tmp_path / "run").read_text() == "notes"


def test_resuming_an_older_checkpoint_never_destroys_a_newer_one(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    older = tmp_path / "step2.pt"  # an older checkpoint of the run, e.g. a best.pt copied aside
    shutil.copy(run / "last.pt", older)
    ckpt = torch.load(older, weights_only=True)
    ckpt["step"], ckpt["epoch"], ckpt["epoch_step"] = 2, 0, 2
    torch.save(ckpt, run / "older.pt")
    before = snapshot(run)
    with pytest.raises(SystemExit, match=r"last.pt \(step 4\) is newer than .*older.pt \(step 2\).*--out"):
        resume("--resume", run / "older.pt", "--stop-at", 6)
    assert snapshot(run) == before
    # In a new folder it goes on, with the run's metrics up to its step.
    resume("--resume", run / "older.pt", "--out", tmp_path / "branch", "--stop-at", 6)
    rows = [json.loads(json.dumps(r)) for r in train.utils.read_csv(tmp_path / "branch" / "metrics.csv")]
    assert [r["step"] for r in rows] == ["2", "4", "6"]
    assert torch.load(tmp_path / "branch" / "last.pt", weights_only=True)["step"] == 6
    assert snapshot(run) == before


def test_resume_with_fp16_after_fp32_and_back(tmp_path, finished_run, monkeypatch):
    """The grad scaler starts afresh when a run moves to fp16 and is dropped when it leaves it. (fp16 needs
    CUDA in train.py; its CPU autocast stands in for it here.)"""
    run = copy_run(finished_run, tmp_path / "run")
    monkeypatch.setattr(train.utils, "resolve_precision", lambda precision, device: (precision, "as asked"))
    resume("--resume", run / "last.pt", "--precision", "fp16", "--stop-at", 5)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 5 and ckpt["scaler"] and ckpt["config"]["precision"] == "fp16"
    resume("--resume", run / "last.pt", "--precision", "fp32", "--stop-at", 6)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 6


def test_score_exits_0_honours_test_time_flags_and_keeps_other_scores(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    resume("--resume", run / "last.pt", "--stop-at", 8)  # to the end of the run: the test split is scored
    end_of_run = (run / "test_scores.json").read_bytes()
    assert resume("--score", run / "best.pt") == 0
    assert resume("--score", run / "best.pt", "--norm-stats", "image", "--test-dropout", "on") == 0
    assert (run / "test_scores.json").read_bytes() == end_of_run
    default = json.loads((run / "test_scores_best_running_dropout-off.json").read_text())
    other = json.loads((run / "test_scores_best_image_dropout-on.json").read_text())
    assert (default["norm_stats"], default["dropout"]) == ("running", "off")
    assert (other["norm_stats"], other["dropout"]) == ("image", "on") and other["psnr"] != default["psnr"]
