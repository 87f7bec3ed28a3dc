"""--precision auto: bf16 where the CPU executes it natively, fp32 where it would be emulated, decided from
the CPU's flags (mocked both ways here, so that it is tested on any machine) and recorded in the run. And
test-time outputs that do not depend on the batch in either precision: bf16 is named, never reached
through auto, so that a CPU that would emulate it runs the same checks (slowly, on tiny inputs)."""
import json

import pytest
import torch

import model
import train
import utils
from conftest import run_generate, tiny_args, write_image

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
X86_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16\n"


@pytest.mark.parametrize("cpuinfo, feature", [(X86_BF16, "amx_bf16"), (X86_PLAIN, None), (ARM_BF16, "bf16")])
def test_the_native_bf16_feature_is_read_from_the_cpu_flags(tmp_path, cpuinfo, feature):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert utils.native_bf16_feature(tmp_path / "cpuinfo") == feature
    assert utils.native_bf16_feature(tmp_path / "missing") is None


@pytest.mark.parametrize("feature, expected", [("avx512_bf16", "bf16"), (None, "fp32")])
def test_auto_follows_the_cpu(monkeypatch, feature, expected):
    monkeypatch.setattr(utils, "native_bf16_feature", lambda: feature)
    precision, why = utils.resolve_precision("auto", torch.device("cpu"))
    assert precision == expected and (feature or "no native bf16") in why
    assert utils.resolve_precision("fp32", torch.device("cpu")) == ("fp32", "as asked")
    assert utils.resolve_precision("auto", torch.device("cuda"))[0] == "bf16"


@pytest.mark.parametrize("feature, expected", [("avx512_bf16", "bf16"), (None, "fp32")])
def test_the_choice_is_printed_and_recorded(tmp_path, monkeypatch, capsys, feature, expected):
    monkeypatch.setattr(utils, "native_bf16_feature", lambda: feature)
    train.main(tiny_args(tmp_path, "--stop-at", 1))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["precision"], cfg["autocast"]) == ("auto", expected)
    assert f"1 x cpu, {expected} (auto: this CPU" in capsys.readouterr().out
    write_image(tmp_path / "in" / "a.png")
    run_generate(tmp_path / "run" / "last.pt", tmp_path / "in", tmp_path / "out")
    assert f"{expected}: auto: this CPU" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert [r["settings"]["precision"] for r in record.values()] == [expected]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("netG, norm_stats, dropout", [("unet", "running", False), ("unet", "image", True),
                                                       ("context-encoder", "running", False)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])  # train.py's, generate.py's
def test_test_time_outputs_do_not_depend_on_the_batch(precision, netG, norm_stats, dropout, memory_format):
    torch.manual_seed(0)
    G = model.build_generator(netG, 3, 3, 32, ngf=8, bottleneck=32).to(memory_format=memory_format)
    for m in G.modules():  # running statistics that are not the identity, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2)
    x = (torch.rand(4, 3, 32, 32) * 2 - 1).contiguous(memory_format=memory_format)
    seeds = [model.image_seed(0, f"{i}.png") for i in range(len(x))]
    with torch.no_grad(), utils.autocast(torch.device("cpu"), precision):
        with model.test_time(G, norm_stats, dropout, seeds):
            together = G(x)
        for i in range(len(x)):
            with model.test_time(G, norm_stats, dropout, seeds[i:i + 1]):
                alone = G(x[i:i + 1])
            assert torch.equal(alone, together[i:i + 1]), f"image {i}"  # bit for bit, not merely within a level


@pytest.mark.parametrize("shape", [(1, 64, 16, 2), (1, 8, 32, 2), (1, 512, 4, 2), (2, 32, 2, 3)])
def test_a_narrow_map_in_bf16_is_computed_as_in_fp32(shape):
    """oneDNN's bf16 convolution goes wrong on maps 2 or 3 px across and longer the other way (a tall panel
    at --aspect keep, in the U-Net's innermost blocks): model.Down runs those in fp32."""
    torch.manual_seed(0)
    down = model.Down(shape[1], shape[1], "batch", innermost=True).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        exact = down(x.clone())
        with utils.autocast(torch.device("cpu"), "bf16"):
            fast = down(x.clone())
    assert torch.isfinite(fast).all() and (fast.float() - exact).abs().max() < 1e-2 * exact.abs().max()


def test_a_tall_page_at_its_own_aspect_in_bf16_is_the_fp32_page():
    torch.manual_seed(0)
    G = model.build_generator("unet", 1, 2, 32, ngf=8).eval()
    x = torch.randn(1, 1, 256, 32).contiguous(memory_format=torch.channels_last)  # a 1:8 panel, padded
    G = G.to(memory_format=torch.channels_last)
    with torch.no_grad():
        exact = G(x)
        with utils.autocast(torch.device("cpu"), "bf16"):
            fast = G(x).float()
    assert torch.isfinite(fast).all() and (fast - exact).abs().max() < 0.05
