"""The HR stage folded for inference: upsampler and tail as one 5x5 convolution at LR resolution.

The HR stage is linear: a 3x3 convolution and PixelShuffle(s) (twice for x4), then the 3x3 tail to RGB,
with no activation between them. Its output pixel at phase (a, b) of LR pixel (y, x) is therefore one
fixed linear function of the features around (y, x) plus a constant, the same at every (y, x): a 5x5
convolution from 64 channels to 3 x s x s (the pixel's colour at each of the s x s phases) followed by
PixelShuffle(s). Its weights are read off the stage itself, in float64, from its response to one unit
impulse per channel, and its bias from its response to zeros.

Work per LR pixel, in multiply-adds: 19k instead of 154k (x2), 43k instead of 347k (x3), 77k instead of
763k (x4); in float32, it is faster than the int8 stage it replaces and exact where that was not.

Exact up to float rounding wherever none of the unfolded layers would read its zero padding, i.e. all but
the outermost ring of HR pixels (x2, x3) or three rings (x4) of the feature map: inference pads the
image by ``inference.EDGE_PADDING`` LR pixels and crops them off, and tiles carry a 2-pixel halo, so
what is kept is exact. Without edge padding (the bare network), ``unfolded`` runs instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from mdsr.model import MDSR

RADIUS = 2  # LR pixels the folded stage reads on each side (3x3 at LR, then 3x3 at HR: 1 + 1/s, rounded up)
# Edge padding from which the folded stage is exact on every pixel kept (x4 differs up to 3 HR pixels in).
EXACT_FROM_PADDING = 1
IMPULSES_AT_ONCE = 8  # each impulse's x4 stage holds ~2.7 MB of float64 maps


class FoldedUpsampler(nn.Module):
    """``tail(upsampler(x))`` as one convolution and PixelShuffle: (1, C, H, W) -> (1, 3, H*s, W*s) float.

    ``unfolded`` keeps the original layers (shared, not copied) for the bare network's edges."""

    weight: torch.Tensor  # buffers, registered in __init__
    bias: torch.Tensor

    def __init__(self, *, upsampler: nn.Module, tail: nn.Module, scale: int, n_feats: int) -> None:
        super().__init__()
        self.scale = scale
        self.unfolded = nn.Sequential(upsampler, tail)
        weight, bias = fold(self.unfolded, scale=scale, n_feats=n_feats)
        reference = next(upsampler.parameters())
        # Not persistent: they follow from the layers in ``unfolded``, and an inference copy is not a checkpoint.
        # channels_last, once: the layout of the trunk's features, which oneDNN's fast path wants both to share.
        weight = weight.to(reference).contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias.to(reference), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=RADIUS)
        return functional.pixel_shuffle(out, self.scale)


@torch.no_grad()
def fold(stage: nn.Module, *, scale: int, n_feats: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (3*s*s, C, 5, 5), bias (3*s*s,)) of the linear ``stage`` (LR features -> HR RGB), in float32:
    output channel k*s*s + a*s + b is colour k at phase (a, b), PixelShuffle's order."""
    exact = copy.deepcopy(stage).to("cpu", torch.float64)
    size, centre = 2 * RADIUS + 5, RADIUS + 2  # room around the impulse: no layer reads its padding
    zeros = torch.zeros(1, n_feats, size, size, dtype=torch.float64)
    constant = exact(zeros)  # the biases alone
    responses = []
    for first in range(0, n_feats, IMPULSES_AT_ONCE):  # a few at a time: x4's float64 maps stay small
        channels = torch.arange(first, min(first + IMPULSES_AT_ONCE, n_feats))
        impulses = torch.zeros(len(channels), n_feats, size, size, dtype=torch.float64)
        impulses[torch.arange(len(channels)), channels, centre, centre] = 1
        responses.append(exact(impulses) - constant)
    response = torch.cat(responses)  # (C, 3, size*s, size*s): each channel's impulse response
    s, width = scale, 2 * RADIUS + 1
    weight = torch.empty(3, s, s, n_feats, width, width, dtype=torch.float64)
    for u in range(width):
        for v in range(width):
            # The output at LR pixel (y, x) reads the input at (y + u - RADIUS, x + v - RADIUS).
            y, x = centre - u + RADIUS, centre - v + RADIUS
            weight[..., u, v] = response[:, :, y * s : (y + 1) * s, x * s : (x + 1) * s].permute(1, 2, 3, 0)
    bias = constant[0, :, centre * s : (centre + 1) * s, centre * s : (centre + 1) * s].reshape(-1)
    return weight.reshape(3 * s * s, n_feats, width, width).float(), bias.float()


def fold_upsamplers(model: MDSR) -> MDSR:
    """An inference-only copy of ``model`` whose HR stage is folded, one ``FoldedUpsampler`` per scale (the
    tail goes into them): the same function up to float rounding, ~10x less work in the HR stage. Its state
    dict is not a checkpoint: keep and save the original."""
    return model if is_folded(model) else fold_in_place(copy.deepcopy(model))


def fold_in_place(model: MDSR) -> MDSR:
    """``fold_upsamplers`` on a copy the caller already made (``quantize.int8_model``: one copy, not two);
    a folded model is returned as it is."""
    if is_folded(model):
        return model
    model.eval().requires_grad_(False)
    for scale in model.scales:
        model.upsample[str(scale)] = FoldedUpsampler(
            upsampler=model.upsample[str(scale)], tail=model.tail, scale=scale, n_feats=model.config.n_feats
        )
    model.tail = nn.Identity()
    return model


def is_folded(model: MDSR) -> bool:
    return isinstance(model.tail, nn.Identity)


def hr_stage(model: MDSR, scale: int, edge_padding: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """What turns a tile of ``model``'s features into HR pixels for a run with ``edge_padding``: the folded
    stage where it is exact on every pixel kept, else the original layers."""
    upsampler = model.upsample[str(scale)]
    if isinstance(upsampler, FoldedUpsampler) and edge_padding < EXACT_FROM_PADDING:
        return upsampler.unfolded
    return lambda features: model.reconstruct(features, scale)
