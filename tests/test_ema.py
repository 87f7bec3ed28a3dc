"""--ema: the average of G's weights, updated every step, in the checkpoint, resumed exactly, and the
generator that validation, best.pt, --export and generate.py use."""
import torch

import tasks
import train
from conftest import tiny_args


def test_the_average_follows_the_formula():
    torch.manual_seed(0)
    G = tasks.build_generator("colorize", "unet", 32, 4)
    ema = train.EMA(G, decay=0.9)
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


def test_resume_with_ema_equals_an_uninterrupted_run(tmp_path):
    common = ["--ema", 0.9, "--epochs", 2, "--epochs-decay", 1]
    train.main(tiny_args(tmp_path / "a", *common, "--stop-at", 6))
    train.main(tiny_args(tmp_path / "b", *common, "--stop-at", 3))
    train.main(train.get_parser().parse_args(["--resume", str(tmp_path / "b" / "run" / "last.pt"), "--stop-at", "6"]))
    a, b = (torch.load(tmp_path / x / "run" / "last.pt", weights_only=True) for x in "ab")
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["G_ema"][k], b["G_ema"][k]) for k in a["G_ema"])
    assert not all(torch.equal(a["G_ema"][k], a["G"][k]) for k in a["G"])


def test_validation_export_and_generate_use_the_average(tmp_path):
    train.main(tiny_args(tmp_path, "--ema", 0.5, "--stop-at", 4, "--val-every", 4))
    last = tmp_path / "run" / "last.pt"
    row = train.utils.read_csv(tmp_path / "run" / "metrics.csv")[0]
    assert row["psnr"] != row["no_ema_psnr"]  # both judged, the average's score is the run's
    train.main(train.get_parser().parse_args(["--export", str(last), str(tmp_path / "G.pt")]))
    ckpt, exported = torch.load(last, weights_only=True), torch.load(tmp_path / "G.pt", weights_only=True)
    assert all(torch.equal(exported["G"][k], ckpt["G_ema"][k]) for k in ckpt["G_ema"])
    G, _ = tasks.load_generator(last)
    assert all(torch.equal(G.state_dict()[k], ckpt["G_ema"][k].float()) for k in ckpt["G_ema"])
