"""The networks: the Pix2Pix U-Net generator and 70x70 PatchGAN discriminator (Isola et al. 2017), and the
Context Encoder generator and its patch discriminator (Pathak et al. 2016).

Layer for layer as the papers' reference implementations, so the parameter counts match the published
figures (see tests/test_model.py). Discriminators return logits: BCEWithLogits is stable and safe under
autocast. Also here: how G runs at test time (BatchNorm statistics, seeded dropout). The channel counts
come from the task (tasks.build_generator); nothing here imports the rest of the repo.
"""
import math
import zlib
from contextlib import contextmanager

import torch
import torch.nn as nn

KERNEL = 4  # every conv in both papers is 4x4, stride 2, padding 1 unless noted
DROPOUT = 0.5  # Pix2Pix: the noise z is dropout in the decoder, at train and (in the paper) test time
DROPOUT_BLOCKS = 3  # Pix2Pix decoder CD512-CD1024-CD1024: dropout in the three innermost decoder blocks


def norm_layer(norm, channels):
    """BatchNorm as in both papers, or InstanceNorm (no affine, as the Pix2Pix reference's 'instance')."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {norm!r}: use batch or instance")


def init_weights(module):
    """N(0, 0.02) for convs, N(1, 0.02) for norm scales, zero biases: the DCGAN init both papers use."""
    if any(p.is_meta for p in module.parameters()):
        return module  # built to be loaded (tasks.load_generator): normal_ on meta would import torch._dynamo (~1.5 s)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def depth_for(size, smallest):
    """Number of stride-2 layers that take a `size` image down to `smallest` pixels."""
    depth = math.log2(size / smallest)
    if size < 2 * smallest or depth != int(depth):
        raise ValueError(f"image size {size} must be a power of two >= {2 * smallest}")
    return int(depth)


# ----------------------------------------------------------------------------------------------------
# Pix2Pix


class Down(nn.Sequential):
    """U-Net encoder block: [LeakyReLU 0.2] - Conv 4x4/2 - [Norm]. The first has no activation (it sees
    the image) and no norm, the innermost no norm (a 1x1 map at 256), as in the reference."""

    def __init__(self, in_ch, out_ch, norm, outermost=False, innermost=False):
        use_norm = not (outermost or innermost)
        layers = [] if outermost else [nn.LeakyReLU(0.2, inplace=True)]
        # No bias where a BatchNorm follows (it would cancel); the reference also drops it on the innermost.
        layers.append(nn.Conv2d(in_ch, out_ch, KERNEL, 2, 1, bias=norm == "instance"))
        if use_norm:
            layers.append(norm_layer(norm, out_ch))
        super().__init__(*layers)

    def forward(self, x):
        if not bf16_conv_fails(x):
            return super().forward(x)
        for layer in self:  # the LeakyReLU still acts in place on x, which is also U-Net's skip
            if isinstance(layer, nn.Conv2d):
                with torch.autocast("cpu", enabled=False):
                    x = layer(x.float())
            else:
                x = layer(x)
        return x


def bf16_conv_fails(x):
    """Whether oneDNN's bf16 convolution on a CPU returns wrong values (NaN, or far beyond rounding) for x:
    a map whose short side is 2 or 3 px and whose other side is longer, as the innermost blocks of the
    U-Net see on a tall panel at --aspect keep (torch 2.14 on CPUs with AMX). Such blocks, a few pixels
    each, run in fp32. Square maps, as in training, are computed right and keep bf16."""
    height, width = x.shape[-2:]
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and height != width and min(height, width) < KERNEL)


class Up(nn.Sequential):
    """U-Net decoder block: ReLU - ConvTranspose 4x4/2 - Norm - [Dropout 0.5]; the outermost ends in Tanh."""

    def __init__(self, in_ch, out_ch, norm, outermost=False, dropout=False):
        layers = [nn.ReLU(inplace=True), nn.ConvTranspose2d(in_ch, out_ch, KERNEL, 2, 1, bias=outermost or norm == "instance")]
        layers += [nn.Tanh()] if outermost else [norm_layer(norm, out_ch)]
        if dropout:
            layers.append(nn.Dropout(DROPOUT))
        super().__init__(*layers)


class UNetGenerator(nn.Module):
    """Pix2Pix U-Net: log2(size) down blocks to a 1x1 bottleneck and as many up blocks, each up block's
    output concatenated with the mirror down block's output (the skips that carry the line art)."""

    def __init__(self, in_ch, out_ch, image_size=256, ngf=64, norm="batch"):
        super().__init__()
        depth = depth_for(image_size, 1)  # 8 at 256: C64-C128-C256-C512-C512-C512-C512-C512
        widths = [ngf * min(2**i, 8) for i in range(depth)]
        self.downs = nn.ModuleList(
            Down(in_ch if i == 0 else widths[i - 1], widths[i], norm, outermost=i == 0, innermost=i == depth - 1)
            for i in range(depth)
        )
        ups = []  # from the bottleneck outwards; every block after the first sees [up, skip] concatenated
        for j, i in enumerate(reversed(range(1, depth))):
            in_width = widths[i] if j == 0 else 2 * widths[i]
            ups.append(Up(in_width, widths[i - 1], norm, dropout=j < DROPOUT_BLOCKS and widths[i - 1] == ngf * 8))
        ups.append(Up(2 * widths[0], out_ch, norm, outermost=True))
        self.ups = nn.ModuleList(ups)

    def forward(self, x):  # (B, in_ch, S, S)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)  # (B, widths[i], S / 2^(i+1), ...)
        x = skips.pop()  # (B, 8 ngf, 1, 1)
        for up in self.ups[:-1]:
            x = torch.cat([up(x), skips.pop()], dim=1)  # (B, 2 * width, ...)
        return self.ups[-1](x)  # (B, out_ch, S, S) in [-1, 1]


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: C64-C128-C256-C512 then a 1-channel conv; each output logit judges one 70x70
    receptive field, a 30x30 map at 256 (14x14 at 128). It sees the pair concat(condition, image)."""

    def __init__(self, in_ch, ndf=64, norm="batch", n_layers=3):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.Conv2d(in_ch, ndf, KERNEL, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1  # C512 keeps the resolution, which sets the 70x70 field
            next_width = ndf * min(2**i, 8)
            layers += [nn.Conv2d(width, next_width, KERNEL, stride, 1, bias=bias), norm_layer(norm, next_width), nn.LeakyReLU(0.2, inplace=True)]
            width = next_width
        layers.append(nn.Conv2d(width, 1, KERNEL, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, pair):  # (B, in_ch, S, S)
        return self.net(pair)  # (B, 1, S/8 - 2, S/8 - 2) logits


# ----------------------------------------------------------------------------------------------------
# Context Encoder


def conv_stack(widths, norm, first_norm):
    """4x4 stride-2 convs through `widths`, each followed by [Norm] and LeakyReLU 0.2; no biases (the
    original Torch code uses :noBias() throughout)."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Conv2d(a, b, KERNEL, 2, 1, bias=False))
        if i > 0 or first_norm:
            layers.append(norm_layer(norm, b))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def encoder_widths(in_ch, size, nf, smallest=4):
    """Channel widths of a stride-2 encoder from `size` down to 4x4: doubling to 8 nf at the end, never
    below nf (3-64-64-128-256-512 at 128, the Context Encoder's encoder)."""
    depth = depth_for(size, smallest)
    return [in_ch] + [max(nf, nf * 8 // 2 ** (depth - 1 - i)) for i in range(depth)]


class ContextEncoder(nn.Module):
    """Context Encoder generator: an encoder from the masked image to a 4x4 map, a 4x4 conv to a 1x1
    bottleneck of `bottleneck` channels, and a decoder up to the patch (half the image side): it predicts
    the content of the hole only."""

    def __init__(self, image_size=128, nf=64, bottleneck=4000, norm="batch", in_ch=3, out_ch=3):
        super().__init__()
        widths = encoder_widths(in_ch, image_size, nf)  # 128 -> 4
        self.encoder = nn.Sequential(
            *conv_stack(widths, norm, first_norm=False),
            nn.Conv2d(widths[-1], bottleneck, KERNEL, bias=False),  # 4x4 -> 1x1
            norm_layer(norm, bottleneck),
            nn.LeakyReLU(0.2, inplace=True),
        )
        up_widths = [nf * 8 // 2**i for i in range(depth_for(image_size // 2, 4))] + [out_ch]  # 512-256-128-64-3
        layers = [nn.ConvTranspose2d(bottleneck, up_widths[0], KERNEL, bias=False), norm_layer(norm, up_widths[0]), nn.ReLU(True)]
        for i, (a, b) in enumerate(zip(up_widths[:-1], up_widths[1:])):
            layers.append(nn.ConvTranspose2d(a, b, KERNEL, 2, 1, bias=False))
            layers += [nn.Tanh()] if i == len(up_widths) - 2 else [norm_layer(norm, b), nn.ReLU(True)]
        self.decoder = nn.Sequential(*layers)

    def forward(self, x):  # (B, 3, S, S) image with the hole filled
        z = self.encoder(x)  # (B, bottleneck, 1, 1)
        return self.decoder(z)  # (B, 3, S/2, S/2) the predicted patch in [-1, 1]


class ContextDiscriminator(nn.Module):
    """Context Encoder discriminator: a DCGAN discriminator on the patch alone (64x64 at 128), 4x4
    stride-2 convs 64-128-256-512 to 4x4, then a 4x4 conv to one logit."""

    def __init__(self, patch_size=64, nf=64, norm="batch", in_ch=3):
        super().__init__()
        widths = encoder_widths(in_ch, patch_size, nf)
        self.net = nn.Sequential(*conv_stack(widths, norm, first_norm=False), nn.Conv2d(widths[-1], 1, KERNEL, bias=False))

    def forward(self, patch):  # (B, 3, P, P)
        return self.net(patch)  # (B, 1, 1, 1) logits


# ----------------------------------------------------------------------------------------------------
# Test time. Pix2Pix (Isola et al. 2017, section 3.3) runs the generator at test time as in training:
# BatchNorm with the statistics of the test batch, which at the paper's batch 1 are each image's own
# statistics, and dropout on. 'running' is the usual eval mode instead (running averages, no dropout).

NORM_STATS = ("image", "running")


def image_seed(seed, key):
    """A stable per-image seed from the run's --seed and the image's name: an image's dropout noise does
    not depend on its batch or on the other images in it."""
    return zlib.crc32(f"{seed}:{key}".encode("utf-8", "surrogateescape"))  # a file name's own bytes


def _per_image_norm(bn, x):
    # What BatchNorm computes in training mode on a batch of one image, for every image of the batch
    # separately (instance normalization with the BatchNorm's scale and shift). Spelled out rather than
    # F.instance_norm, whose reductions round differently with the batch size: an image's output must
    # be bit-identical whatever else shares its batch. In fp32 whatever the autocast: bf16 kernels round
    # differently in their vectorized body and in its scalar tail (rsqrt by one bf16 step), and which
    # of the two an image's channels reach in the (B, C, 1, 1) statistics depends on the batch size.
    x = x.float()
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    scale = torch.rsqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1)
    return (x - mean) * scale + bn.bias.view(1, -1, 1, 1)


def _seeded_dropout(drop, generators, x):
    keep = 1 - drop.p
    masks = [torch.empty(x.shape[1:], device=x.device).bernoulli_(keep, generator=g) for g in generators]
    return x * torch.stack(masks).to(x.dtype) / keep


@contextmanager
def test_time(G, norm_stats="running", dropout=False, seeds=None):
    """Run G (inside the with block) as at test time: BatchNorm with each image's own statistics
    ('image') or the running averages ('running'); dropout on with one seed per image of the batch
    (`seeds`, see image_seed) or off. Nothing in G is changed afterwards, so validation can use it."""
    if norm_stats not in NORM_STATS:
        raise ValueError(f"unknown norm_stats {norm_stats!r}: use one of {NORM_STATS}")
    was_training, patched = G.training, []
    G.eval()
    generators = None
    if dropout:
        device = next(G.parameters()).device
        generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
    for m in G.modules():
        if norm_stats == "image" and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = lambda x, m=m: _per_image_norm(m, x)
        elif dropout and isinstance(m, nn.Dropout):
            m.forward = lambda x, m=m: _seeded_dropout(m, generators, x)
        else:
            continue
        patched.append(m)
    try:
        yield G
    finally:
        for m in patched:
            del m.forward  # the class's forward again
        G.train(was_training)


# ----------------------------------------------------------------------------------------------------
# Building the networks of a run: the task (tasks.py) passes the channel counts of its x and y.

# The smallest image side each generator works at: the U-Net's PatchGAN gives S/8 - 2 logits a side (2 at
# 32); the Context Encoder decodes its patch (S/2) from a 4x4 map (8 at 16).
MIN_SIDE = {"unet": 32, "context-encoder": 16}


def check_image_size(netG, size):
    """Raise ValueError with one line unless netG and its discriminator work at `size` x `size`."""
    depth_for(size, MIN_SIDE[netG] // 2)


def build_generator(netG, in_ch, out_ch, image_size, ngf=64, norm="batch", bottleneck=4000):
    if netG == "unet":
        return init_weights(UNetGenerator(in_ch, out_ch, image_size, ngf, norm))
    return init_weights(ContextEncoder(image_size, ngf, bottleneck, norm, in_ch, out_ch))


def build_discriminator(netD, in_ch, out_ch, image_size, ndf=64, norm="batch"):
    if netD == "patch":  # conditional: sees (condition, image) pairs
        return init_weights(PatchDiscriminator(in_ch + out_ch, ndf, norm))
    return init_weights(ContextDiscriminator(image_size // 2, ndf, norm, out_ch))  # sees the patch alone
