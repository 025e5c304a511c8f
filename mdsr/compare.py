"""MDSR-BAM against bicubic and, when there is one, the ground truth: what the demo shows.

Ground truth comes two ways, each with its rule here, applied once, at admission (``mdsr.serving``): an
uploaded original must fit the output (``truth_fits``), and is cropped to it; or the input itself is the
truth (``own_truth_sizes``): cropped to a multiple of a whole factor and downscaled with MATLAB's
bicubic, and that LR image is what gets upscaled. Metrics follow the literature's protocol
(``mdsr.metrics``) on 8-bit colour: alpha is ignored. Also here: choosing the part of a photo to show or
to upscale (``most_detailed_region``, ``region_at``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from mdsr.imaging import (
    ImageError,
    Picture,
    crop_picture,
    fill_hidden_colour,
    preview_rgb,
    resize_picture,
    rgb8,
)
from mdsr.inference import ProgressCallback, RunInfo, RunPlan, execute
from mdsr.metrics import psnr, ssim
from mdsr.model import MDSR
from mdsr.sizing import MAX_FACTOR, MIN_FACTOR, SizePlan


@dataclass(frozen=True)
class Scores:
    """PSNR (dB) and SSIM of one picture against the truth, rounded to 4 decimals."""

    psnr: float
    ssim: float


@dataclass(frozen=True)
class Metrics:
    """Bicubic and MDSR-BAM against the truth, and MDSR-BAM's PSNR gain in dB (the API's JSON: ``asdict``)."""

    bicubic: Scores
    mdsr: Scores
    gain_db: float


@dataclass(frozen=True)
class Comparison:
    lr: Picture  # what the network saw
    bicubic: Picture | None  # None where nothing shows it
    output: Picture
    truth: Picture | None
    metrics: Metrics | None
    info: RunInfo


def own_truth_sizes(size: tuple[int, int], scale: int | float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The rule for an image that is its own ground truth: (LR size, truth size), each (width, height), of a
    picture of ``size``. A whole factor crops the picture to its multiple; another keeps it whole and rounds
    each side of the LR to the nearest size whose ratio stays within 1.1 to 8 (80 px at 1.1 gives 72, not
    73: 80/73 is under 1.1)."""
    w, h = size
    if min(h, w) < 2 * scale:
        raise ImageError(
            f"the image is {w}x{h}; to use it as its own ground truth at {scale:g}x it must be at least "
            f"{math.ceil(2 * scale)} pixels on each side"
        )
    if scale == int(scale):
        s = int(scale)
        return (w // s, h // s), (w - w % s, h - h % s)

    def side(n: int) -> int:
        return min(max(round(n / scale), math.ceil(n / MAX_FACTOR - 1e-9)), math.floor(n / MIN_FACTOR + 1e-9))

    return (side(w), side(h)), (w, h)


def own_truth(pic: Picture, lr_size: tuple[int, int], truth_size: tuple[int, int]) -> tuple[Picture, Picture]:
    """(LR, truth) of a picture that is its own ground truth, at the sizes ``own_truth_sizes`` gave: the
    truth is the picture cropped to ``truth_size`` from its top left, the LR its MATLAB-bicubic resize."""
    tw, th = truth_size
    truth = pic if pic.size == truth_size else crop_picture(pic, (th, tw))
    return resize_picture(truth, lr_size), truth


def truth_fits(lr_size: tuple[int, int], truth_size: tuple[int, int], sizing: SizePlan) -> tuple[int, int]:
    """The rule for an uploaded original: the size it is cropped to, or an ``ImageError`` saying why it does
    not fit. Where the network alone makes the output (``w*s x h*s``), the original may be up to ``s - 1``
    pixels larger on each side (the benchmarks crop HR to a multiple of the scale before downscaling);
    where a resize makes it, it must be the output's size."""
    (w, h), (tw, th), s = lr_size, truth_size, sizing.scale
    if not sizing.resized(lr_size):
        if w * s <= tw < (w + 1) * s and h * s <= th < (h + 1) * s:
            return w * s, h * s
        raise ImageError(
            f"the ground truth is {tw}x{th}; for a {w}x{h} input at {s}x it must be {w * s}x{h * s} "
            f"(or up to {s - 1} pixel{'s' if s > 2 else ''} larger on each side)"
        )
    if truth_size != sizing.size:
        raise ImageError(
            f"the ground truth is {tw}x{th}; the output is {sizing.size[0]}x{sizing.size[1]} and the truth must "
            "be that size"
        )
    return truth_size


def score(pic: Picture, truth: Picture, shave: int) -> Scores:
    """PSNR/SSIM of one picture against the truth: Y channel, ``shave`` pixels of border, 8-bit
    (``mdsr.metrics``)."""
    out8, truth8 = rgb8(pic), rgb8(truth)
    return Scores(psnr=round(psnr(out8, truth8, shave=shave), 4), ssim=round(ssim(out8, truth8, shave=shave), 4))


def compare(
    models: Mapping[int, MDSR],
    lr: Picture,
    run: RunPlan,
    *,
    truth: Picture | None = None,
    bicubic: bool | Scores = True,
    progress: ProgressCallback | None = None,
) -> Comparison:
    """Upscale ``lr`` as ``run`` plans (``models``: one per scale, prepared for its precision) and compare
    with bicubic and, where given, the ``truth`` (already fitted: the output's size).

    ``bicubic``: True keeps the bicubic picture (and scores it); False makes it only where a truth needs
    its scores; ``Scores`` (a second model on the same input and truth) are taken as bicubic's as they are.
    PSNR/SSIM shave ``ceil(scale)`` pixels of border, the literature's convention.
    """
    # The colour under fully transparent pixels (often black) would bleed into the edges of both pictures:
    # filled once, so that the network and bicubic are compared on the same input.
    lr = fill_hidden_colour(lr)
    output, info = execute(models, lr, run, progress)
    made = None
    if bicubic is True or (truth is not None and bicubic is False):
        made = resize_picture(lr, run.size)  # MATLAB's bicubic, antialiased, to the exact size
    metrics = None
    if truth is not None:
        shave = math.ceil(info.scale)
        ours = score(output, truth, shave)
        if isinstance(bicubic, Scores):
            theirs = bicubic
        else:
            assert made is not None  # made above, as a truth was given
            theirs = score(made, truth, shave)
        metrics = Metrics(bicubic=theirs, mdsr=ours, gain_db=round(ours.psnr - theirs.psnr, 4))
    return Comparison(
        lr=lr, bicubic=made if bicubic is True else None, output=output, truth=truth, metrics=metrics, info=info
    )


def most_detailed_region(rgb: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (x, y) of the ``size``-square window of a uint8 (H, W, 3) image with the most gradient energy."""
    grey = rgb.astype(np.float64).mean(axis=2)
    h, w = grey.shape
    size = min(size, h, w)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(x), int(y)


def region_at(pic: Picture, size: tuple[int, int], center: tuple[float, float] | None) -> tuple[int, int]:
    """Top-left (x, y) of a ``size`` (width, height) region of the picture: around ``center`` (fractions of
    its width and height), or around its most detailed part (found on a preview of at most ~512 pixels a
    side, for speed)."""
    (w, h), (cw, ch) = pic.size, size
    if center is not None:
        x0, y0 = round(center[0] * w - cw / 2), round(center[1] * h - ch / 2)
        return min(max(x0, 0), w - cw), min(max(y0, 0), h - ch)
    step = max(1, max(w, h) // 512)
    preview = rgb8(replace(pic, rgb=pic.rgb[::step, ::step], alpha=None))
    x0, y0 = most_detailed_region(preview, max(1, min(cw, ch) // step))
    return min(x0 * step, w - cw), min(y0 * step, h - ch)


def crop_region(pic: Picture, corner: tuple[int, int], size: tuple[int, int]) -> Picture:
    """A copy of the ``size`` (width, height) region at ``corner`` (x, y): the whole picture can then go."""
    (x0, y0), (cw, ch) = corner, size
    rgb = np.ascontiguousarray(pic.rgb[y0 : y0 + ch, x0 : x0 + cw])
    alpha = None if pic.alpha is None else np.ascontiguousarray(pic.alpha[y0 : y0 + ch, x0 : x0 + cw])
    return replace(pic, rgb=rgb, alpha=alpha)


def overview_of(pic: Picture, longest: int = 800) -> np.ndarray:
    """A small 8-bit preview of the whole picture, at most ``longest`` pixels a side (every n-th pixel)."""
    step = max(1, math.ceil(max(pic.size) / longest))
    return preview_rgb(replace(pic, rgb=pic.rgb[::step, ::step], alpha=None))
