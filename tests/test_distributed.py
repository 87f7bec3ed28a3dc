"""torchrun with 2 CPU processes (gloo): the same code path as one process, with identical replicas."""
import os
import subprocess
import sys

import pytest
import torch

import train
from conftest import REPO, tiny_flags

pytestmark = pytest.mark.slow  # each test starts torchrun and its processes

# 32 images (4 steps a pass: 2 processes of 4 images each) and a data-loader worker in each process
DATA = ["--workers", "1", "--demo-images", "32"]


# train.py as torchrun starts it, plus a record of each rank's own G and D parameters once training
# returns. (BatchNorm running statistics are per rank until DDP broadcasts rank 0's at the next forward.)
RECORDING_MAIN = """
import os, sys, torch
sys.path.insert(0, {repo!r})
import model, runfolder, train
built = {{}}
for name, key in (("build_generator", "G"), ("build_discriminator", "D")):
    def record(*a, _build=getattr(model, name), _key=key, **k):
        built[_key] = _build(*a, **k)
        return built[_key]
    setattr(model, name, record)
class RecordingEMA(runfolder.EMA):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        built["G_ema"] = self.average
runfolder.EMA = RecordingEMA
args = train.get_parser().parse_args()
train.main(args)
torch.save({{k: {{n: p.detach() for n, p in v.named_parameters()}} for k, v in built.items()}}, os.path.join(args.out, f"params_rank{{os.environ['RANK']}}.pt"))
"""


def torchrun(tmp_path, *args):
    script = tmp_path / "recording_train.py"
    script.write_text(RECORDING_MAIN.format(repo=str(REPO)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("task", ["colorize", "inpaint"])
def test_two_processes_stay_identical_and_resume(tmp_path, task):
    out = tmp_path / "run"
    stdout = torchrun(tmp_path, *tiny_flags(out, *DATA, "--ema", 0.9, "--stop-at", 5, task=task))
    assert stdout.count("G (") == 1  # rank 0 alone prints
    assert sorted(p.name for p in out.glob("*.pt") if not p.name.startswith("params")) == ["best.pt", "last.pt"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 5 and len(ckpt["rng"]) == 2  # 4 steps per epoch (32 images / 2 ranks / 4)
    torchrun(tmp_path, "--resume", out / "last.pt", "--out", out, "--stop-at", 7)
    ranks = [torch.load(out / f"params_rank{r}.pt", weights_only=True) for r in range(2)]
    for net in ("G", "D", "G_ema"):  # G's average too: the same on every rank, with no communication
        for k, v in ranks[0][net].items():
            assert torch.equal(v, ranks[1][net][k]), f"{net}.{k} differs between ranks"
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 7


def test_resume_on_another_number_of_processes_keeps_the_schedule(tmp_path):
    """One process of 4 images a step, resumed on two: refused with 4 images each (8 a step), accepted
    with --batch-size 2, which keeps the images per step, the steps per pass and the lr schedule."""
    out = tmp_path / "run"
    train.main(train.get_parser().parse_args(tiny_flags(out, *DATA, "--stop-at", 3)))
    script = tmp_path / "recording_train.py"
    script.write_text(RECORDING_MAIN.format(repo=str(REPO)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "--resume", str(out / "last.pt"), "--stop-at", "5"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    refused = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "resume it with --batch-size 2" in refused.stderr + refused.stdout
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
    torchrun(tmp_path, "--resume", out / "last.pt", "--out", out, "--batch-size", 2, "--stop-at", 5)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 5 and ckpt["world"] == 2 and ckpt["steps_per_epoch"] == 8
