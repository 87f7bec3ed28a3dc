"""tasks.load_generator on official pix2pix checkpoints, this repo's checkpoints and files that are neither."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import colorize
import images
import model
import official
import tasks

FIXTURE = Path(__file__).parent / "fixtures" / "official_pix2pix"


def fixture_input():
    rgb = images.pil_to_tensor(images.load_image(FIXTURE / "input.png"))[None]  # (1, 3, 256, 256) uint8
    x, _ = colorize.colorize_pair(rgb)  # L / 50 - 1
    return x


def test_official_checkpoint_reproduces_the_official_outputs():
    G, cfg = tasks.load_generator(FIXTURE / "latest_net_G.pth")
    assert cfg["task"] == "colorize" and cfg["netG"] == "unet" and cfg["source"] == "official"
    assert (cfg["image_size"], cfg["ngf"], cfg["norm"]) == (256, 4, "batch") and isinstance(cfg["bottleneck"], int)
    x = fixture_input()
    with torch.no_grad():
        assert not G.training
        np.testing.assert_allclose(G(x)[0].numpy(), np.load(FIXTURE / "expected_ab_eval.npy"), atol=1e-5)
        with model.test_time(G, "image"):
            np.testing.assert_allclose(G(x)[0].numpy(), np.load(FIXTURE / "expected_ab_image.npy"), atol=1e-5)


def test_train_opt_is_parsed():
    opts = official.read_train_opt(FIXTURE / "train_opt.txt")
    assert opts["netG"] == "unet_256" and opts["ngf"] == "4" and opts["norm"] == "batch"
    assert (opts["input_nc"], opts["output_nc"], opts["no_dropout"]) == ("1", "2", "False")
    assert opts["name"] == "comics_colorization" and opts["model"] == "colorization"  # '[default: ...]' dropped
    assert opts["suffix"] == "" and "Options" not in " ".join(opts)


# A U-Net laid out as the official code lays it out: blocks nested in `.model` Sequentials, each
# returning [skip, up]; written here from the layout facts, to check the mapping at other sizes and norms.
class OfficialBlock(nn.Module):
    def __init__(self, outer, inner, in_ch, sub=None, norm="batch", where="middle", dropout=False):
        super().__init__()
        bias = norm == "instance"
        Norm = nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d
        down, lrelu, relu = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if where == "outermost":
            layers = [down, sub, relu, nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1), nn.Tanh()]
        elif where == "innermost":
            layers = [lrelu, down, relu, nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), Norm(outer)]
        else:
            up = nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias)
            layers = [lrelu, down, Norm(inner), sub, relu, up, Norm(outer)]
            layers += [nn.Dropout(0.5)] if dropout else []
        self.outermost, self.model = where == "outermost", nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def official_unet(depth, ngf, norm, in_ch=1, out_ch=2):
    block = OfficialBlock(ngf * 8, ngf * 8, ngf * 8, norm=norm, where="innermost")
    for _ in range(depth - 5):
        block = OfficialBlock(ngf * 8, ngf * 8, ngf * 8, block, norm, dropout=True)
    for mult in (4, 2, 1):
        block = OfficialBlock(ngf * mult, ngf * mult * 2, ngf * mult, block, norm)
    net = nn.Module()
    net.model = OfficialBlock(out_ch, ngf, in_ch, block, norm, where="outermost")
    net.forward = net.model.forward
    for m in net.modules():  # trained-looking statistics, so that eval mode is really tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_128_official_layout_loads_equivalently(tmp_path, norm):
    torch.manual_seed(0)
    official = official_unet(7, 2, norm)
    torch.save(official.state_dict(), tmp_path / "latest_net_G.pth")
    (tmp_path / "train_opt.txt").write_text(f"---- Options ----\n    netG: unet_128\n    norm: {norm}\n---- End ----\n")
    G, cfg = tasks.load_generator(tmp_path / "latest_net_G.pth")
    assert (cfg["image_size"], cfg["ngf"], cfg["norm"]) == (128, 2, norm)
    x = torch.rand(1, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        official.eval()
        assert (G(x) - official(x)).abs().max() < 1e-6
        # Training mode, dropout on: the same draws in the same layers give the same output, which
        # checks that the loaded generator has the official dropout placement.
        official.train(), G.train()
        torch.manual_seed(1)
        expected = official(x)
        torch.manual_seed(1)
        assert (G(x) - expected).abs().max() < 1e-6


def test_no_dropout_option_removes_dropout(tmp_path):
    torch.save(official_unet(7, 2, "batch").state_dict(), tmp_path / "latest_net_G.pth")
    G, _ = tasks.load_generator(tmp_path / "latest_net_G.pth", overrides={"no_dropout": True})
    assert not any(isinstance(m, nn.Dropout) for m in G.modules())


def test_this_repos_checkpoints_and_exports_load(tmp_path):
    for cfg in (dict(task="colorize", netG="unet", image_size=32, ngf=4, norm="batch", bottleneck=0),
                dict(task="inpaint", netG="context-encoder", image_size=32, ngf=4, norm="batch", bottleneck=16)):
        G = tasks.build_generator(*(cfg[k] for k in tasks.GENERATOR_KEYS))
        torch.save({"G": G.state_dict(), "config": cfg, "opt_G": {"state": {}}, "step": 3}, tmp_path / "last.pt")
        loaded, loaded_cfg = tasks.load_generator(tmp_path / "last.pt")
        assert loaded_cfg == cfg
        for k, v in G.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
        half = {k: v.bfloat16() if v.is_floating_point() else v for k, v in G.state_dict().items()}
        torch.save({"G": half, "config": cfg, "format": "generator"}, tmp_path / "model.pt")
        loaded, _ = tasks.load_generator(tmp_path / "model.pt")
        assert all(p.dtype == torch.float32 for p in loaded.parameters())
        for k, v in half.items():
            assert torch.equal(loaded.state_dict()[k], v.float() if v.is_floating_point() else v), k


def test_legacy_serialization_loads_without_mmap(tmp_path):
    legacy = dict(_use_new_zipfile_serialization=False)  # the format of torch < 1.6, which mmap cannot read
    torch.save(official_unet(7, 2, "batch").state_dict(), tmp_path / "latest_net_G.pth", **legacy)
    G, cfg = tasks.load_generator(tmp_path / "latest_net_G.pth")
    assert cfg["image_size"] == 128


def bad_files(tmp_path):
    """name -> a file load_generator must refuse (the overrides it is given)."""
    (tmp_path / "notes.pth").write_text("not a checkpoint\nat all")
    torch.save({"a": 1, "b": torch.zeros(2)}, tmp_path / "random.pt")
    torch.save(model.PatchDiscriminator(3, 4).state_dict(), tmp_path / "discriminator.pth")
    (tmp_path / "facades").mkdir()
    torch.save(official_unet(7, 2, "batch", in_ch=3, out_ch=3).state_dict(), tmp_path / "facades" / "latest_net_G.pth")
    cfg = dict(task="colorize", netG="unet", image_size=32, ngf=4, norm="batch", bottleneck=0)
    state = tasks.build_generator(*(cfg[k] for k in tasks.GENERATOR_KEYS)).state_dict()
    state.pop("ups.0.1.weight")
    torch.save({"G": state, "config": cfg}, tmp_path / "missing_key.pt")
    wider = tasks.build_generator("colorize", "unet", 32, 8).state_dict()
    torch.save({"G": wider, "config": cfg}, tmp_path / "wrong_shape.pt")
    torch.save({"G": {}, "config": {"task": "colorize"}}, tmp_path / "no_config.pt")
    torch.save(official_unet(7, 2, "batch").state_dict(), tmp_path / "official_128.pth")
    return {"missing.pt": None, "notes.pth": None, "random.pt": None, "discriminator.pth": None,
            "facades/latest_net_G.pth": None, "missing_key.pt": None, "wrong_shape.pt": None, "no_config.pt": None,
            "official_128.pth": {"ngf": 64}}


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    for name, overrides in bad_files(tmp_path).items():
        with pytest.raises(ValueError) as error:
            tasks.load_generator(tmp_path / name, overrides)
        message = str(error.value)
        assert str(tmp_path / name) in message and "\n" not in message, message
