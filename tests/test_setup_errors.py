"""Mistakes that a run's set-up meets answer in one line, never a traceback, and leave no run folder."""
import os

import pytest
import torch

import train
from conftest import organized_tree, tiny_args


def refused(args):
    """train.main's one-line refusal of args."""
    with pytest.raises(SystemExit) as stopped:
        train.main(args)
    code = stopped.value.code
    assert isinstance(code, str) and code.startswith("error: ") and "\n" not in code, code
    return code


def test_training_images_that_are_all_unreadable(tmp_path):
    tree = organized_tree(tmp_path / "tree", train=12)
    for path in (tree / "train").iterdir():
        path.write_bytes(b"")
    message = refused(tiny_args(tmp_path, "--data", tree))
    assert message.startswith(f"error: none of the 12 training images in {tree / 'train'} can be read ")
    assert not (tmp_path / "run").exists()


def test_a_tree_without_val_names_the_missing_folder(tmp_path):
    tree = organized_tree(tmp_path / "tree", val=0)
    assert refused(tiny_args(tmp_path, "--data", tree)) == (f"error: {tree} has no val/ folder: an organized tree has "
                                                           f"train/ and val/ (test/ is optional)")


def test_resume_of_an_exported_generator(tmp_path):
    train.main(tiny_args(tmp_path, "--stop-at", 1))
    train.main(train.get_parser().parse_args(["--export", str(tmp_path / "run" / "last.pt"), str(tmp_path / "G.pt")]))
    message = refused(train.get_parser().parse_args(["--resume", str(tmp_path / "G.pt")]))
    assert "is a generator exported with --export, which keeps no training state: resume its run's last.pt" in message
    torch.save({"G": {}}, tmp_path / "other.pt")
    assert "is not a train.py checkpoint (no config, D, " in refused(train.get_parser().parse_args(
        ["--resume", str(tmp_path / "other.pt")]))


def test_out_a_dangling_link(tmp_path):
    (tmp_path / "run").symlink_to(tmp_path / "nowhere")
    assert refused(tiny_args(tmp_path)) == (f"error: --out {tmp_path / 'run'} links to {tmp_path / 'nowhere'}, which "
                                            f"does not exist")
    assert (tmp_path / "run").is_symlink() and not (tmp_path / "nowhere").exists()


def test_out_that_cannot_be_made(tmp_path):
    """Below a file: no folder can be made there, whoever runs it (root too)."""
    (tmp_path / "notes").write_text("notes")
    message = refused(tiny_args(tmp_path, "--out", tmp_path / "notes" / "run"))
    assert message == f"error: cannot make the run folder {tmp_path / 'notes' / 'run'}: Not a directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only folder")
def test_out_in_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert refused(tiny_args(tmp_path, "--out", locked / "run")) == (f"error: cannot make the run folder "
                                                                    f"{locked / 'run'}: Permission denied")
    assert refused(tiny_args(tmp_path, "--out", locked)) == (f"error: cannot write into the run folder {locked}: "
                                                            f"Permission denied")
    assert not list(locked.iterdir())


@pytest.mark.parametrize("task, flags, said", [
    ("inpaint", ["--hints"], "--hints is for --task colorize"),
    ("inpaint", ["--split-seed", "3"], "--split-seed is for --task colorize"),
    ("colorize", ["--fill", "mean", "--hints"], "--fill is for --task inpaint"),
    ("colorize", ["--overlap", "4"], "--overlap is for --task inpaint"),
])
def test_another_tasks_flag(tmp_path, task, flags, said):
    """A flag that the run's task would ignore is refused, before any folder is made."""
    message = refused(tiny_args(tmp_path, *flags, task=task))
    assert message == f"error: {said}, and this run is --task {task}"
    assert not (tmp_path / "run").exists()
