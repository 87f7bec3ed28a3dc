"""Steps drive a run (lr to exactly 0, validations within an epoch), the papers' presets, test-time
normalization recorded in the checkpoint, and the settings that are refused or accepted in one line."""
import csv
import json
import shutil

import pytest
import torch

import train
from colorize import Colorize
from conftest import tiny_args, write_image


def read_rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def organized_tree(root, train=8, val=4, test=2):
    for split, count in (("train", train), ("val", val), ("test", test)):
        for i in range(count):
            write_image(root / split / f"{i}.jpg", size=(40, 36), seed=100 * len(split) + i)
    return root


def test_steps_drive_validation_and_lr_reaches_zero(tmp_path):
    """16 images at batch 4: 4 steps a pass, 2 + 1 passes = 12 steps; validating every 2 steps writes 6
    rows, 2 of them within the first pass, and the lr after the last step is exactly 0."""
    train.main(tiny_args(tmp_path, "--epochs", 2, "--epochs-decay", 1, "--val-every", 2))
    rows = read_rows(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    assert [r["epoch"] for r in rows[:2]] == ["0.5", "1"]
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[:4] == [2e-4] * 4 and 0 < lrs[4] < 2e-4 and lrs[5] == 0.0
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())[:2] == ["step_00000000.png", "step_00000002.png"]
    scores = json.loads((tmp_path / "run" / "test_scores.json").read_text())
    assert scores["checkpoint"] == "best.pt" and scores["images"] == 8 and "ciede2000" in scores


def test_norm_stats_recorded_and_both_modes_validated(tmp_path):
    train.main(tiny_args(tmp_path / "a", "--batch-size", 1, "--stop-at", 2, "--val-every", 2))
    train.main(tiny_args(tmp_path / "b", "--stop-at", 2, "--val-every", 2))
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)["config"]
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)["config"]
    assert a["norm_stats"] == "image" and b["norm_stats"] == "running"  # run G as it was trained
    assert "running_stats_psnr" in read_rows(tmp_path / "a" / "run")[0]
    assert "image_stats_psnr" in read_rows(tmp_path / "b" / "run")[0]


def test_presets(tmp_path):
    """The Context Encoder's G gets 10x D's lr, as its original code; colorize on a big set follows the
    paper's large-set practice; explicit flags are never overwritten."""
    inpaint, _ = train.resolve_config(train.get_parser().parse_args(["--task", "inpaint", "--out", str(tmp_path / "i")]), None)
    assert inpaint.lr_g_mult == 10.0 and inpaint.lambda_rec == 0.999 and inpaint.lambda_adv == pytest.approx(0.001)
    plain, _ = train.resolve_config(train.get_parser().parse_args(["--task", "inpaint", "--lr-g-mult", "1",
                                                                    "--out", str(tmp_path / "j")]), None)
    assert plain.lr_g_mult == 1.0
    colorize, _ = train.resolve_config(train.get_parser().parse_args(["--lambda-rec", "10", "--out", str(tmp_path / "c")]), None)
    assert colorize.lambda_rec == 10.0 and colorize.lambda_adv == 1.0
    alias, _ = train.resolve_config(train.get_parser().parse_args(["--lambda-l1", "50", "--out", str(tmp_path / "d")]), None)
    assert alias.lambda_rec == 50.0
    tree = organized_tree(tmp_path / "tree")
    small, _ = train.resolve_config(train.get_parser().parse_args(["--data", str(tree), "--out", str(tmp_path / "s")]), None)
    assert (small.batch_size, small.epochs, small.epochs_decay, small.norm_stats) == (1, 100, 100, "image")
    big = dict(Colorize.paper, **Colorize.large_set)
    assert (big["batch_size"], big["epochs"] + big["epochs_decay"]) == (4, 6)


def test_the_inpaint_paper_preset_config(tmp_path):
    tree = organized_tree(tmp_path / "faces", train=4, val=2)
    train.main(train.get_parser().parse_args(["--task", "inpaint", "--data", str(tree), "--out", str(tmp_path / "run"),
                                              "--image-size", "32", "--ngf", "8", "--ndf", "8", "--bottleneck", "16",
                                              "--batch-size", "2", "--stop-at", "1", "--workers", "0"]))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["lr_g_mult"] == 10.0 and cfg["netG"] == "context-encoder" and cfg["norm_stats"] == "running"


@pytest.mark.parametrize("flags, message", [
    (["--task", "inpaint", "--norm", "instance"], "no spatial statistics"),
    (["--task", "inpaint", "--norm-stats", "image"], "no per-image statistics"),
])
def test_refused_before_any_work(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        train.main(tiny_args(tmp_path, *flags))
    assert not (tmp_path / "run").exists()


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


def test_export_and_score(tmp_path, capsys):
    train.main(tiny_args(tmp_path, "--stop-at", 2))
    last = tmp_path / "run" / "last.pt"
    for dtype in ("fp32", "bf16"):
        train.main(train.get_parser().parse_args(["--export", str(last), str(tmp_path / f"{dtype}.pt"), "--export-dtype", dtype]))
    small = torch.load(tmp_path / "fp32.pt", weights_only=True)
    full = torch.load(last, weights_only=True)
    assert set(small) == {"format", "G", "config", "dtype", "params"} and small["format"] == "generator"
    assert all(torch.equal(small["G"][k], full["G_ema"][k]) for k in full["G"])  # colorize's default: G's average
    assert (tmp_path / "bf16.pt").stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size
    assert train.main(train.get_parser().parse_args(["--score", str(last)])) == 0
    scores = json.loads((tmp_path / "run" / "test_scores_last_running_dropout-off.json").read_text())
    assert scores["psnr"] > 0 and scores["checkpoint"] == "last.pt"
    with pytest.raises(SystemExit, match="not a train.py checkpoint"):
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
        train.main(train.get_parser().parse_args(["--export", str(tmp_path / "other.pt"), str(tmp_path / "x.pt")]))
