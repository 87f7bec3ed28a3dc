"""train.py --paper: every setting in which the defaults depart from the papers goes back to the paper's
(Pix2Pix: no average of G, test-time dropout on with each image's own BatchNorm statistics; the Context
Encoder: train.lua's overlapPred 4 and G's lr 10x), it is recorded in the run, and generate.py follows the
checkpoint."""
import json

import pytest
import torch

import runfolder
import tasks
import train
from conftest import organized_tree, run_generate, tiny_args, write_image


def resolved(tmp_path, *flags, task="colorize"):
    args = train.get_parser().parse_args(["--task", task, "--out", str(tmp_path / "new"), *flags])
    return vars(runfolder.new_run_config(args)[0])


@pytest.mark.parametrize("task", list(tasks.TASKS))
@pytest.mark.parametrize("on_data", [False, True])
def test_paper_reverts_every_departure_and_nothing_else(tmp_path, task, on_data):
    data = ["--data", str(organized_tree(tmp_path / "tree"))] if on_data else []
    default, paper = resolved(tmp_path, *data, task=task), resolved(tmp_path, *data, "--paper", task=task)
    reverted = {**tasks.TASKS[task].departures, **({} if on_data else tasks.TASKS[task].demo_departures)}
    assert tasks.TASKS[task].departures, "each task states where its defaults depart from the paper"
    for key in reverted:  # None in a paper preset: the task's defaults() decide, as without a preset
        assert paper[key] == tasks.TASKS[task].paper[key] or tasks.TASKS[task].paper[key] is None
    assert {k for k in default if default[k] != paper[k]} <= set(reverted) | {"paper"}


def test_the_papers_settings(tmp_path):
    colorize = resolved(tmp_path, "--paper")
    assert (colorize["ema"], colorize["test_dropout"], colorize["norm_stats"]) == (0.0, "on", "image")
    inpaint = resolved(tmp_path, "--paper", task="inpaint")
    assert (inpaint["overlap"], inpaint["lr_g_mult"], inpaint["rec_loss"], inpaint["lambda_rec"]) == (4, 10.0, "l2", 0.999)


def test_a_flag_given_still_applies(tmp_path):
    assert resolved(tmp_path, "--paper", "--test-dropout", "off")["test_dropout"] == "off"
    assert resolved(tmp_path, "--paper", "--overlap", "2", task="inpaint")["overlap"] == 2


def test_a_paper_run_records_it_and_generate_follows_the_checkpoint(tmp_path):
    assert train.main(tiny_args(tmp_path, "--paper", "--steps", 2)) is None
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["paper"], config["ema"], config["test_dropout"], config["norm_stats"]) == (True, 0.0, "on", "image")
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert "G_ema" not in checkpoint and checkpoint["config"]["paper"]
    write_image(tmp_path / "in" / "a.png")
    assert run_generate(tmp_path / "run" / "last.pt", tmp_path / "in", tmp_path / "out") == 0
    (record,) = json.loads((tmp_path / "out" / "generate.json").read_text()).values()
    assert (record["settings"]["test_dropout"], record["settings"]["norm_stats"]) == ("on", "image")
