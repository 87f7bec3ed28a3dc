"""Steps drive a run (lr to exactly 0, validations within an epoch, --steps and --stop-at), the papers'
presets, test-time normalization recorded in the checkpoint, and the settings that are accepted."""
import argparse
import json
import shutil

import pytest
import torch

import runfolder
import train
import utils
from colorize import Colorize
from conftest import organized_tree, tiny_args


def lrs(run):
    return {int(r["step"]): float(r["lr"]) for r in utils.read_csv(run / "metrics.csv")}


def test_steps_drive_validation_and_the_lr_reaches_zero(tmp_path):
    """16 images at batch 4: 4 steps a pass; --steps 10 with 2 + 1 passes' split: the constant lr to step 7,
    then 3 steps of decay to exactly 0; validating every 2 steps writes 5 rows, 2 of them within the first
    pass, and the test split is scored at the end."""
    train.main(tiny_args(tmp_path, "--steps", 10, "--epochs", 2, "--epochs-decay", 1, "--val-every", 2))
    rows = utils.read_csv(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows[:2]] == ["0.5", "1"]
    assert lrs(tmp_path / "run") == {2: 2e-4, 4: 2e-4, 6: 2e-4, 8: pytest.approx(2e-4 * 2 / 3), 10: 0.0}
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())[:2] == ["step_00000000.png", "step_00000002.png"]
    scores = json.loads((tmp_path / "run" / "test_scores.json").read_text())
    assert scores["checkpoint"] == "best.pt" and scores["images"] == 8 and "ciede2000" in scores


@pytest.mark.parametrize("steps, epochs, decay, length", [
    (10, 2, 1, (10, 3)), (1, 8, 4, (1, 1)), (5, 25, 0, (5, 0)), (7, 0, 0, (7, 0)), (None, 2, 1, (30, 10))])
def test_any_decay_reaches_zero_and_none_keeps_the_lr(steps, epochs, decay, length):
    """A decay that rounds to no step still lasts one, so the lr is 0 after the last; --epochs-decay 0 (the
    Context Encoder's preset) keeps it constant, also with --steps."""
    cfg = argparse.Namespace(steps=steps, epochs=epochs, epochs_decay=decay)
    assert train.run_length(cfg, steps_per_epoch=10) == length


def test_stop_at_stops_this_session_only(tmp_path):
    """Without --steps the run is its passes (1 + 1 here: 8 steps); --stop-at ends this command before them,
    unscored, and a resume goes on to the end."""
    train.main(tiny_args(tmp_path, "--stop-at", 3, "--val-every", 2))
    assert not (tmp_path / "run" / "test_scores.json").exists()
    train.main(train.get_parser().parse_args(["--resume", str(tmp_path / "run" / "last.pt")]))
    assert max(lrs(tmp_path / "run")) == 8 and lrs(tmp_path / "run")[8] == 0.0
    assert (tmp_path / "run" / "test_scores.json").exists()


def test_norm_stats_recorded_and_both_modes_validated(tmp_path):
    train.main(tiny_args(tmp_path / "a", "--batch-size", 1, "--stop-at", 2, "--val-every", 2))
    train.main(tiny_args(tmp_path / "b", "--stop-at", 2, "--val-every", 2))
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)["config"]
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)["config"]
    assert a["norm_stats"] == "image" and b["norm_stats"] == "running"  # run G as it was trained
    assert "running_stats_psnr" in utils.read_csv(tmp_path / "a" / "run" / "metrics.csv")[0]
    assert "image_stats_psnr" in utils.read_csv(tmp_path / "b" / "run" / "metrics.csv")[0]


def test_presets(tmp_path):
    """The Context Encoder's G gets 10x D's lr, as its original code; colorize on a big set follows the
    paper's large-set practice; explicit flags are never overwritten."""
    inpaint, _ = runfolder.new_run_config(train.get_parser().parse_args(["--task", "inpaint", "--out", str(tmp_path / "i")]))
    assert inpaint.lr_g_mult == 10.0 and inpaint.lambda_rec == 0.999 and inpaint.lambda_adv == pytest.approx(0.001)
    plain, _ = runfolder.new_run_config(train.get_parser().parse_args(["--task", "inpaint", "--lr-g-mult", "1",
                                                                    "--out", str(tmp_path / "j")]))
    assert plain.lr_g_mult == 1.0
    colorize, _ = runfolder.new_run_config(train.get_parser().parse_args(["--lambda-rec", "10", "--out", str(tmp_path / "c")]))
    assert colorize.lambda_rec == 10.0 and colorize.lambda_adv == 1.0
    alias, _ = runfolder.new_run_config(train.get_parser().parse_args(["--lambda-l1", "50", "--out", str(tmp_path / "d")]))
    assert alias.lambda_rec == 50.0
    tree = organized_tree(tmp_path / "tree")
    small, _ = runfolder.new_run_config(train.get_parser().parse_args(["--data", str(tree), "--out", str(tmp_path / "s")]))
    assert (small.batch_size, small.epochs, small.epochs_decay, small.norm_stats) == (1, 100, 100, "image")
    big = dict(Colorize.paper, **Colorize.large_set)
    assert (big["batch_size"], big["epochs"] + big["epochs_decay"]) == (4, 6)


def test_the_inpaint_paper_preset_config(tmp_path):
    tree = organized_tree(tmp_path / "faces", train=4, val=2)
    train.main(tiny_args(tmp_path, "--data", tree, "--batch-size", 2, "--stop-at", 1, "--paper", task="inpaint"))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["lr_g_mult"] == 10.0 and cfg["netG"] == "context-encoder" and cfg["norm_stats"] == "running"


def test_inpaint_unet_with_instance_norm_trains(tmp_path):
    train.main(tiny_args(tmp_path, "--netG", "unet", "--norm", "instance", "--stop-at", 2, task="inpaint"))
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2


def test_bad_data_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        train.main(tiny_args(tmp_path, "--data", tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no images found"):
        train.main(tiny_args(tmp_path, "--data", tmp_path / "empty"))
    tree = organized_tree(tmp_path / "noval", val=0)
    (tree / "val").mkdir()  # there, but empty: the test split must not stand in for it
    with pytest.raises(SystemExit, match="no val images .* never used in their place"):
        train.main(tiny_args(tmp_path, "--data", tree))


def test_resume_after_moving_the_data_and_changing_the_system(tmp_path):
    tree = organized_tree(tmp_path / "data")
    train.main(tiny_args(tmp_path, "--data", tree, "--stop-at", 2, "--batch-size", 2))
    moved = tmp_path / "moved"
    shutil.move(tree, moved)
    last = str(tmp_path / "run" / "last.pt")
    with pytest.raises(SystemExit, match="is gone: give its new place with --data"):
        train.main(train.get_parser().parse_args(["--resume", last]))
    with pytest.raises(SystemExit, match="--ngf would change"):
        train.main(train.get_parser().parse_args(["--resume", last, "--data", str(moved), "--ngf", "16"]))
    train.main(train.get_parser().parse_args(["--resume", last, "--data", str(moved), "--precision", "bf16",
                                              "--channels-last", "--workers", "1", "--stop-at", "4"]))
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["step"] == 4 and ckpt["config"]["data"] == str(moved) and ckpt["config"]["precision"] == "bf16"
