"""train.py end to end on tiny networks: learning, exact resume, checkpoints, bad files, a crash."""
import pytest
import torch

import score
import train
import utils
from conftest import tiny_args


@pytest.mark.slow
@pytest.mark.parametrize("task", ["colorize", "inpaint"])
def test_overfits_one_batch(tmp_path, task):
    """The reconstruction loss on one small batch falls by at least half within 300 steps (each row has
    the mean loss of the 20 steps before it)."""
    args = tiny_args(tmp_path, "--demo-images", 4, "--load-size", 32, "--epochs", 300, "--epochs-decay", 0,
                     "--val-every", 20, "--val-images", 4, task=task)
    train.main(args)
    rows = utils.read_csv(tmp_path / "run" / "metrics.csv")
    first, last = float(rows[0]["loss_G_rec"]), float(rows[-1]["loss_G_rec"])
    assert rows[-1]["step"] == "300"
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("task", ["colorize", "inpaint"])
def test_resume_equals_uninterrupted_run(tmp_path, task):
    """N steps + resume + M steps gives the same weights as N + M steps (across an epoch boundary), G's
    average too (colorize keeps one by default, inpaint none)."""
    common = ["--epochs", 2, "--epochs-decay", 1]
    train.main(tiny_args(tmp_path / "a", *common, "--stop-at", 6, task=task))
    train.main(tiny_args(tmp_path / "b", *common, "--stop-at", 3, task=task))
    resume = train.get_parser().parse_args(["--resume", str(tmp_path / "b" / "run" / "last.pt"), "--stop-at", "6"])
    train.main(resume)
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and a["epoch"] == b["epoch"] == 1
    assert ("G_ema" in a) == ("G_ema" in b) == (task == "colorize")
    for net in ("G", "D", "G_ema") if task == "colorize" else ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"
    assert a["opt_G"]["state"][0]["exp_avg"].equal(b["opt_G"]["state"][0]["exp_avg"])
    if task == "colorize":  # the average is not G itself
        assert not all(torch.equal(a["G_ema"][k], a["G"][k]) for k in a["G"])


def test_checkpoint_is_plain_and_complete(tmp_path):
    train.main(tiny_args(tmp_path))
    run = tmp_path / "run"
    ckpt = torch.load(run / "last.pt", weights_only=True)  # plain tensors, numbers and strings only
    assert {"G", "D", "opt_G", "opt_D", "sched_G", "sched_D", "scaler", "epoch", "step", "rng", "config"} <= set(ckpt)
    assert ckpt["config"]["task"] == "colorize" and ckpt["epoch"] == 2
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["G"])
    assert (run / "best.pt").exists() and (run / "config.json").exists() and (run / "plot.png").exists()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000000.png", "step_00000004.png", "step_00000008.png"]
    rows = utils.read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["lr"]) > float(rows[1]["lr"])  # the linear decay epoch


@pytest.mark.slow  # writes a checkpoint of 900 MB
def test_default_size_steps_and_parameter_counts(tmp_path, comics_tree):
    """A few steps at the paper's defaults (256 px, ngf 64) on a raw COMICS tree."""
    args = train.get_parser().parse_args(["--data", str(comics_tree), "--out", str(tmp_path / "run"),
                                          "--stop-at", "2", "--workers", "0"])
    train.main(args)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["params"] == {"G": 54_409_858, "D": 2_765_633}
    assert ckpt["config"]["image_size"] == 256 and ckpt["config"]["load_size"] == 286 and ckpt["config"]["batch_size"] == 1
    assert sum(t.numel() for t in ckpt["G"].values() if t.is_floating_point() and t.dim() > 0) > 54_409_858  # + BN stats


def test_bad_files_in_tree_are_skipped_and_counted(tmp_path, comics_tree):
    train.main(tiny_args(tmp_path, "--data", comics_tree, "--epochs", 1, "--epochs-decay", 0, "--batch-size", 2))
    rows = utils.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 1 and float(rows[0]["psnr"]) > 0


def test_crash_leaves_the_periodic_checkpoint(tmp_path, monkeypatch):
    """A crash mid-run: the checkpoint of --save-every-min (here after every step) is there to resume from."""
    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(score, "validate", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(tiny_args(tmp_path, "--save-every-min", 0))
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1 and ckpt["epoch_step"] == 0  # all 4 steps of the first epoch
    monkeypatch.undo()
    train.main(train.get_parser().parse_args(["--resume", str(tmp_path / "run" / "last.pt")]))
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2
