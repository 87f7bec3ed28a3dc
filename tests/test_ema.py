"""--ema: the average of G's weights, updated every step, in the checkpoint (resumed exactly: test_train.py),
and the generator that validation, best.pt, --export and generate.py use; --export's formats and --score."""
import json

import pytest
import torch

import runfolder
import tasks
import train
from conftest import tiny_args


def test_the_average_follows_the_formula():
    torch.manual_seed(0)
    G = tasks.build_generator("colorize", "unet", 32, 4)
    ema = runfolder.EMA(G, decay=0.9)
    start = {k: v.clone() for k, v in G.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for p in G.parameters():
                p.add_(1.0)
        ema.update(step)
    # decays min(0.9, (1 + t) / (10 + t)): 0.1, 0.1818..., 0.25; each step G moved by 1
    expected = 0.0
    for step in range(3):
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * (step + 1)
    name, p = next(iter(ema.averaged().named_parameters()))
    assert torch.allclose(p, start[name] + expected, atol=1e-6)
    for name, buffer in ema.averaged().named_buffers():
        assert torch.equal(buffer, G.state_dict()[name])  # the running statistics are G's


def test_validation_export_and_generate_use_the_average(tmp_path):
    """colorize keeps an average by default; --export writes it alone, in fp32 or bf16, and refuses a file
    that is no run's; --score scores last.pt's test split into a file of its own."""
    train.main(tiny_args(tmp_path, "--stop-at", 4, "--val-every", 4))
    last = tmp_path / "run" / "last.pt"
    row = train.utils.read_csv(tmp_path / "run" / "metrics.csv")[0]
    assert row["psnr"] != row["no_ema_psnr"]  # both judged, the average's score is the run's
    for dtype in ("fp32", "bf16"):
        train.main(train.get_parser().parse_args(["--export", str(last), str(tmp_path / f"{dtype}.pt"), "--export-dtype", dtype]))
    ckpt, exported = torch.load(last, weights_only=True), torch.load(tmp_path / "fp32.pt", weights_only=True)
    assert set(exported) == {"format", "G", "config", "dtype", "params"} and exported["format"] == "generator"
    assert all(torch.equal(exported["G"][k], ckpt["G_ema"][k]) for k in ckpt["G_ema"])
    assert (tmp_path / "bf16.pt").stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size
    G, _ = tasks.load_generator(last)
    assert all(torch.equal(G.state_dict()[k], ckpt["G_ema"][k].float()) for k in ckpt["G_ema"])
    assert train.main(train.get_parser().parse_args(["--score", str(last)])) == 0
    scores = json.loads((tmp_path / "run" / "test_scores_last_running_dropout-off.json").read_text())
    assert scores["psnr"] > 0 and scores["checkpoint"] == "last.pt"
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match="not a train.py checkpoint"):
        train.main(train.get_parser().parse_args(["--export", str(tmp_path / "other.pt"), str(tmp_path / "x.pt")]))
