"""MDSR-BAM against bicubic and, when there is one, the ground truth: what the demo shows.

Ground truth comes two ways. An uploaded original must be the input's size times the scale, or up to
``scale - 1`` pixels larger on each side (the benchmarks crop HR to a multiple of the scale before
downscaling), and is cropped to the multiple. Or the input itself is the truth: it is cropped to a
multiple of the scale and downscaled with MATLAB's bicubic, and that LR image is what gets upscaled.
Metrics follow the literature's protocol (``mdsr.metrics``) on 8-bit colour: alpha is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from mdsr.imaging import (
    ImageError,
    Picture,
    bicubic_downscale,
    bicubic_upscale,
    crop_picture,
    preview_rgb,
    resize_picture,
    rgb8,
)
from mdsr.inference import (
    DEFAULT_MAX_OUTPUT_PIXELS,
    Precision,
    ProgressCallback,
    RunInfo,
    TrunkChoice,
    upscale_planned,
)
from mdsr.metrics import psnr, ssim
from mdsr.model import MDSR, SUPPORTED_SCALES
from mdsr.sizing import MAX_FACTOR, MIN_FACTOR, SizePlan, Target, plan


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


def own_truth(pic: Picture, scale: int | float) -> tuple[Picture, Picture]:
    """(LR, truth) where the picture is its own ground truth: for a trained scale, cropped to a multiple of
    ``scale`` and that crop downscaled with MATLAB's bicubic; for another factor, the whole picture and its
    bicubic downscale to ``round(side / factor)``."""
    w, h = pic.size
    if min(h, w) < 2 * scale:
        raise ImageError(
            f"the image is {w}x{h}; to use it as its own ground truth at {scale:g}x it must be at least "
            f"{math.ceil(2 * scale)} pixels on each side"
        )
    lr_size, (tw, th) = own_truth_sizes(pic.size, scale)
    if scale == int(scale):
        return bicubic_downscale(pic, int(scale)), crop_picture(pic, (th, tw))
    return resize_picture(pic, lr_size), pic


def own_truth_sizes(size: tuple[int, int], scale: int | float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(LR size, truth size), each (width, height), of a picture of ``size`` that is its own ground truth
    (``own_truth``): a whole factor crops to its multiple; another keeps the picture whole and rounds each
    side of the LR to the nearest size whose ratio stays within 1.1 to 8 (80 px at 1.1 gives 72, not 73:
    80/73 is under 1.1)."""
    w, h = size
    if scale == int(scale):
        s = int(scale)
        return (w // s, h // s), (w - w % s, h - h % s)

    def side(n: int) -> int:
        return min(max(round(n / scale), math.ceil(n / MAX_FACTOR - 1e-9)), math.floor(n / MIN_FACTOR + 1e-9))

    return (side(w), side(h)), (w, h)


def check_ground_truth_size(lr_size: tuple[int, int], truth_size: tuple[int, int], scale: int) -> None:
    """An original (W, H) fits an input (w, h) at ``scale`` if it is w*s x h*s, or up to s - 1 pixels larger."""
    (w, h), (tw, th) = lr_size, truth_size
    if not (w * scale <= tw < (w + 1) * scale and h * scale <= th < (h + 1) * scale):
        raise ImageError(
            f"the ground truth is {tw}x{th}; for a {w}x{h} input at {scale}x it must be {w * scale}x{h * scale} "
            f"(or up to {scale - 1} pixels larger on each side)"
        )


def fit_ground_truth(lr: Picture, truth: Picture, scale: int) -> Picture:
    """The uploaded original cropped to the input's size times the scale, or a clear error."""
    check_ground_truth_size(lr.size, truth.size, scale)
    w, h = lr.size
    return crop_picture(truth, (h * scale, w * scale))


def score(pic: Picture, truth: Picture, scale: int) -> Scores:
    """PSNR/SSIM of one picture against the truth: Y channel, shave = scale, 8-bit (``mdsr.metrics``)."""
    out8, truth8 = rgb8(pic), rgb8(truth)
    return Scores(psnr=round(psnr(out8, truth8, shave=scale), 4), ssim=round(ssim(out8, truth8, shave=scale), 4))


def compare(
    model: MDSR | Mapping[int, MDSR],
    pic: Picture,
    scale: int | float | Target,
    *,
    truth: Picture | None = None,
    self_truth: bool = False,
    progress: ProgressCallback | None = None,
    with_bicubic: bool = True,
    bicubic_scores: Scores | None = None,
    tile: int | Literal["auto"] | None = "auto",
    precision: Precision = "auto",
    self_ensemble: bool = False,
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
    trunk: TrunkChoice = "auto",
) -> Comparison:
    """Upscale ``pic`` (or, with ``self_truth``, its MATLAB-bicubic downscale) by ``scale`` (2, 3 or 4, a
    factor from 1.1 to 8, or a ``sizing.Target``) and compare. ``model`` may be one model per scale (the
    published weights hold one scale a file), for sizes that take two network stages.

    The bicubic picture is kept where ``with_bicubic`` asks for it; with a ground truth it is also made to be
    scored, unless ``bicubic_scores`` are given (a second model compared on the same input and truth). The
    other keywords are ``upscale_picture``'s.
    """
    if isinstance(scale, Target) and scale.factor is not None:
        scale = scale.factor
    trained = not isinstance(scale, Target) and scale in SUPPORTED_SCALES
    if self_truth:
        if isinstance(scale, Target):
            raise ImageError("as its own ground truth, an image is measured at a factor, not at a size")
        pic, truth = own_truth(pic, scale)
    if trained:
        size_plan = SizePlan((int(scale),), (pic.size[0] * int(scale), pic.size[1] * int(scale)))
        if truth is not None and not self_truth:
            truth = fit_ground_truth(pic, truth, int(scale))
    else:
        target = Target(width=truth.size[0], height=truth.size[1]) if self_truth else scale
        size_plan = plan(pic.size, target)
        if truth is not None and truth.size != size_plan.size:
            raise ImageError(
                f"the ground truth is {truth.size[0]}x{truth.size[1]}; the output is {size_plan.size[0]}x"
                f"{size_plan.size[1]} and the truth must be that size"
            )
    output, info = upscale_planned(
        model, pic, size_plan, progress=progress, tile=tile, precision=precision, self_ensemble=self_ensemble,
        max_output_pixels=max_output_pixels, trunk=trunk,
    )  # fmt: skip
    needs_bicubic = with_bicubic or (truth is not None and bicubic_scores is None)
    bicubic = None
    if needs_bicubic:
        bicubic = bicubic_upscale(pic, int(scale)) if trained else resize_picture(pic, size_plan.size)
    metrics = None
    if truth is not None:
        shave = math.ceil(info.scale)
        ours = score(output, truth, shave)
        theirs = bicubic_scores or score(bicubic, truth, shave)
        metrics = Metrics(bicubic=theirs, mdsr=ours, gain_db=round(ours.psnr - theirs.psnr, 4))
    return Comparison(
        lr=pic, bicubic=bicubic if with_bicubic else None, output=output, truth=truth, metrics=metrics, info=info
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
