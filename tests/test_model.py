"""The networks against the published parameter counts and shapes (Isola et al. 2017 and the Context Encoder reference port)."""
import pytest
import torch

import model
import tasks


def test_pix2pix_parameter_counts():
    assert model.num_params(model.UNetGenerator(1, 2, 256)) == 54_409_858  # Lab colorization
    assert model.num_params(model.UNetGenerator(3, 3, 256)) == 54_413_955
    assert model.num_params(model.UNetGenerator(3, 3, 256, norm="instance")) == 54_409_603
    assert model.num_params(model.PatchDiscriminator(3)) == 2_765_633
    assert model.num_params(model.PatchDiscriminator(6)) == 2_768_705


def test_context_encoder_parameter_counts():
    assert model.num_params(model.ContextEncoder(128, 64, 4000)) == 71_124_544
    assert model.num_params(model.ContextDiscriminator(64)) == 2_765_568


def test_builders_match_the_tasks():
    G = tasks.build_generator("colorize", "unet", 256)
    D = tasks.build_discriminator("colorize", "unet", "patch", 256)
    assert (model.num_params(G), model.num_params(D)) == (54_409_858, 2_765_633)
    assert model.num_params(tasks.build_generator("inpaint", "context-encoder", 128)) == 71_124_544


@pytest.mark.parametrize("size, depth", [(32, 5), (64, 6), (128, 7), (256, 8)])
def test_unet_depth_follows_the_image_size(size, depth):
    G = model.UNetGenerator(1, 2, size, ngf=8).eval()
    assert len(G.downs) == depth and len(G.ups) == depth
    out = G(torch.randn(2, 1, size, size))
    assert out.shape == (2, 2, size, size) and out.abs().max() <= 1


def test_dropout_sits_in_the_three_innermost_decoder_blocks():
    G = model.UNetGenerator(1, 2, 256, ngf=8)
    with_dropout = [any(isinstance(m, torch.nn.Dropout) for m in up) for up in G.ups]
    assert with_dropout == [True, True, True, False, False, False, False, False]


@pytest.mark.parametrize("size, patches", [(256, 30), (128, 14)])
def test_patchgan_map_size(size, patches):
    D = model.PatchDiscriminator(3, ndf=8)
    assert D(torch.randn(1, 3, size, size)).shape == (1, 1, patches, patches)


@pytest.mark.parametrize("size", [64, 128])
def test_context_encoder_predicts_the_center_patch(size):
    G = model.ContextEncoder(size, nf=8, bottleneck=16)
    assert G(torch.randn(2, 3, size, size)).shape == (2, 3, size // 2, size // 2)
    assert model.ContextDiscriminator(size // 2, nf=8)(torch.randn(2, 3, size // 2, size // 2)).shape == (2, 1, 1, 1)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        model.UNetGenerator(1, 2, 100)


def test_weight_init():
    torch.manual_seed(0)
    G = tasks.build_generator("colorize", "unet", 256)
    conv = G.downs[1][1].weight
    norm = G.downs[1][2]
    assert abs(conv.std().item() - 0.02) < 0.001 and abs(conv.mean().item()) < 0.001
    assert abs(norm.weight.mean().item() - 1) < 0.01 and norm.bias.abs().max() == 0
