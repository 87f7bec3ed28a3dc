"""Generators trained by the official pix2pix code (github.com/junyanz/pytorch-CycleGAN-and-pix2pix), run here.

That code saves the generator as a bare state_dict of nested U-Net blocks (checkpoints/<name>/
latest_net_G.pth) beside a train_opt.txt. Its colorization mode (--model colorization) is our colorize task
(L/50 - 1 -> ab/110, same layers, same biases), so its checkpoints run here after a renaming. Two
differences leave the weights as they are:
- each official block returns cat([skip, up]) where ours concatenates [up, skip], so the input channels
  (dim 0 of a ConvTranspose2d weight) of every up conv that sees a concatenation swap halves;
- the official dropout follows the ngf*8 decoder blocks just outside the innermost one (decoder blocks
  2-4 at 256), ours the paper's CD512-CD1024-CD1024 (blocks 1-3). A loaded official generator gets the
  official placement, so that test-time dropout draws the same kind of noise as the official code.
"""
from pathlib import Path

import torch
import torch.nn as nn

import colorize
import model
import utils

FIRST_KEY = "model.model.0.weight"  # the outermost down conv, (ngf, input_nc, 4, 4)
LAST_KEY = "model.model.3.weight"  # the outermost up conv, (2 ngf, output_nc, 4, 4)
PLAIN_BLOCKS = 5  # official U-Net blocks without dropout: outermost, three widening, innermost


def is_official(state_dict):
    return isinstance(state_dict, dict) and FIRST_KEY in state_dict


def read_train_opt(path):
    """The options of an official train_opt.txt ('name: value [default: ...]' lines), as strings."""
    opts = {}
    for line in Path(path).read_text().splitlines():
        name, sep, value = line.partition(":")
        if sep:
            opts[name.strip()] = value.split("[default:")[0].strip()
    return opts


def _layers(level):
    """Key prefix of the layers of the official block at `level` (0 outermost), each nesting the next."""
    return "model.model" if level == 0 else "model.model.1" + ".model.3" * (level - 1) + ".model"


def _module_names(depth):
    """Official layer name -> UNetGenerator module name. Layers of an official block: outermost
    [conv, block, relu, convT, tanh], innermost [lrelu, conv, relu, convT, norm], the others
    [lrelu, conv, norm, block, relu, convT, norm, (dropout)]."""
    names = {}
    for level in range(depth):
        j = depth - 1 - level  # our decoder counts from the bottleneck out
        if level == 0:
            pairs = [(0, "downs.0.0"), (3, f"ups.{j}.1")]
        elif level == depth - 1:
            pairs = [(1, f"downs.{level}.1"), (3, f"ups.{j}.1"), (4, f"ups.{j}.2")]
        else:
            pairs = [(1, f"downs.{level}.1"), (2, f"downs.{level}.2"), (5, f"ups.{j}.1"), (6, f"ups.{j}.2")]
        names.update({f"{_layers(level)}.{i}": ours for i, ours in pairs})
    return names


def official_to_ours(state_dict, depth):
    """An official U-Net state_dict with `depth` downsamplings -> UNetGenerator's state_dict."""
    names = _module_names(depth)
    concatenated = {f"ups.{j}.1" for j in range(1, depth)}  # all up convs but the innermost one
    ours = {}
    for key, tensor in state_dict.items():
        module, _, param = key.rpartition(".")
        if module not in names:
            raise ValueError(f"unexpected key {key} for an official U-Net with {depth} downsamplings")
        if names[module] in concatenated and param == "weight":
            skip, up = tensor.chunk(2, dim=0)
            tensor = torch.cat([up, skip])
        ours[f"{names[module]}.{param}"] = tensor
    return ours


def _infer(state_dict):
    """(depth, {netG, ngf, norm, input_nc, output_nc}) of an official U-Net, read off its tensors."""
    depth = 1
    while f"{_layers(depth)}.1.weight" in state_dict:
        depth += 1
    if depth < 2 or LAST_KEY not in state_dict:
        raise ValueError("not an official pix2pix U-Net: the nested blocks are missing")
    if f"{_layers(1)}.2.running_mean" in state_dict:
        norm = "batch"
    elif f"{_layers(0)}.0.bias" in state_dict:
        norm = "instance"  # InstanceNorm2d(affine=False) has no tensors, but its convs have biases
    else:
        raise ValueError("an official U-Net without norm layers (--norm none) is not supported")
    ngf, input_nc = state_dict[FIRST_KEY].shape[:2]
    output_nc = state_dict[LAST_KEY].shape[1]
    return depth, dict(netG=f"unet_{2**depth}", ngf=ngf, norm=norm, input_nc=input_nc, output_nc=output_nc)


def _place_dropout(G, use_dropout):
    depth = len(G.downs)
    for j, up in enumerate(G.ups[:-1]):
        if isinstance(up[-1], nn.Dropout):
            del up[-1]
        if use_dropout and 1 <= j <= depth - PLAIN_BLOCKS:
            up.append(nn.Dropout(model.DROPOUT))


def load(state_dict, opts):
    """An official colorization generator's state_dict and its options (train_opt.txt, then overrides)
    -> (our UNetGenerator in eval mode, a config as train.py would have written it)."""
    depth, arch = _infer(state_dict)
    for k, v in arch.items():
        if k in opts and str(opts[k]) != str(v):
            raise ValueError(f"{k} is {opts[k]} in train_opt.txt or the overrides but {v} in the weights")
    if opts.get("model", "colorization") != "colorization":
        raise ValueError(f"only the official --model colorization is supported, not --model {opts['model']}")
    if (arch["input_nc"], arch["output_nc"]) != (1, 2):
        raise ValueError(f"only the official colorization mode (1 -> 2 channels) is supported, not "
                         f"{arch['input_nc']} -> {arch['output_nc']} channels")
    no_dropout = str(opts.get("no_dropout", False)) == "True"
    batch_1 = str(opts.get("batch_size", 1)) == "1"  # the official default
    cfg = dict(task=colorize.TASK.name, netG="unet", image_size=2**depth, ngf=arch["ngf"], norm=arch["norm"],
               bottleneck=0, source="official", official_netG=arch["netG"], no_dropout=no_dropout,
               norm_stats="image" if batch_1 else "running", test_dropout="off")  # as train.py decides them
    with torch.device("meta"):  # no time spent on a random init that the weights overwrite
        G = model.UNetGenerator(arch["input_nc"], arch["output_nc"], cfg["image_size"], cfg["ngf"], cfg["norm"])
    utils.assign_weights(G, official_to_ours(state_dict, depth))
    _place_dropout(G, not no_dropout)
    return G.eval(), cfg  # eval again: the new Dropout layers start in training mode
