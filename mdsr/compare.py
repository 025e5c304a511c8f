"""MDSR-BAM against bicubic and, when there is one, the ground truth: what the demo shows.

Ground truth comes two ways. An uploaded original must be the input's size times the scale, or up to
``scale - 1`` pixels larger on each side (the benchmarks crop HR to a multiple of the scale before
downscaling), and is cropped to the multiple. Or the input itself is the truth: it is cropped to a
multiple of the scale and downscaled with MATLAB's bicubic, and that LR image is what gets upscaled.
Metrics follow the literature's protocol (``mdsr.metrics``) on 8-bit colour: alpha is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from mdsr.imaging import (
    ImageError,
    Picture,
    bicubic_downscale,
    bicubic_upscale,
    crop_picture,
    preview_rgb,
    rgb8,
    to_uint,
)
from mdsr.inference import DEFAULT_MAX_OUTPUT_PIXELS, Precision, ProgressCallback, RunInfo, upscale_picture
from mdsr.metrics import psnr, rgb_to_y, ssim
from mdsr.model import MDSR


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
    bicubic: Picture | None  # None where nothing shows it (no slider, no ground truth)
    output: Picture
    truth: Picture | None
    metrics: Metrics | None
    info: RunInfo


def own_truth(pic: Picture, scale: int) -> tuple[Picture, Picture]:
    """(LR, truth) where the picture is its own ground truth: cropped to a multiple of ``scale``, and
    that crop downscaled with MATLAB's bicubic."""
    w, h = pic.size
    if min(h, w) < 2 * scale:
        raise ImageError(
            f"the image is {w}x{h}; to use it as its own ground truth at {scale}x it must be at least "
            f"{2 * scale} pixels on each side"
        )
    lr = bicubic_downscale(pic, scale)
    return lr, crop_picture(pic, (lr.rgb.shape[0] * scale, lr.rgb.shape[1] * scale))


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


def measure(output: Picture, truth: Picture, bicubic: Picture, scale: int) -> Metrics:
    """PSNR/SSIM (Y channel, shave = scale) of MDSR-BAM and bicubic against the truth, and the gain."""
    ours, theirs = score(output, truth, scale), score(bicubic, truth, scale)
    return Metrics(bicubic=theirs, mdsr=ours, gain_db=round(ours.psnr - theirs.psnr, 4))


def compare(
    model: MDSR,
    pic: Picture,
    scale: int,
    *,
    truth: Picture | None = None,
    self_truth: bool = False,
    progress: ProgressCallback | None = None,
    with_bicubic: bool = True,
    tile: int | Literal["auto"] | None = "auto",
    precision: Precision = "auto",
    self_ensemble: bool = False,
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
) -> Comparison:
    """Upscale ``pic`` (or, with ``self_truth``, its MATLAB-bicubic downscale) and compare.

    The bicubic baseline is made when ``with_bicubic`` or a ground truth asks for it (its metrics); the
    other keywords are ``upscale_picture``'s.
    """
    if self_truth:
        pic, truth = own_truth(pic, scale)
    elif truth is not None:
        truth = fit_ground_truth(pic, truth, scale)
    output, info = upscale_picture(
        model, pic, scale, progress=progress, tile=tile, precision=precision, self_ensemble=self_ensemble,
        max_output_pixels=max_output_pixels,
    )  # fmt: skip
    bicubic = bicubic_upscale(pic, scale) if with_bicubic or truth is not None else None
    metrics = measure(output, truth, bicubic, scale) if truth is not None else None
    return Comparison(lr=pic, bicubic=bicubic, output=output, truth=truth, metrics=metrics, info=info)


def error_map(output: Picture, truth: Picture, gain: float = 4.0) -> np.ndarray:
    """|output - truth| on the Y channel, amplified ``gain`` times, as a uint8 heat map (H, W, 3)."""
    diff = np.abs(rgb_to_y(rgb8(output)) - rgb_to_y(rgb8(truth)))
    level = np.clip(diff * gain / 255.0, 0, 1)
    # black -> red -> yellow -> white, so small errors stay dark and large ones stand out
    r = np.clip(level * 3, 0, 1)
    g = np.clip(level * 3 - 1, 0, 1)
    b = np.clip(level * 3 - 2, 0, 1)
    return to_uint(np.stack([r, g, b], axis=2))


def most_detailed_region(pic: Picture, size: int) -> tuple[int, int]:
    """Top-left (x, y), in the picture's pixels, of the ``size``-square window with the most gradient energy."""
    grey = rgb8(pic).astype(np.float64).mean(axis=2)
    h, w = grey.shape
    size = min(size, h, w)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(x), int(y)


def zoom_panel(
    comparison: Comparison,
    *,
    center: tuple[float, float] | None = None,
    crop: int = 48,
    zoom: int = 256,
    left: tuple[str, Picture] | None = None,
    right_label: str = "MDSR-BAM",
) -> np.ndarray:
    """Bicubic | MDSR-BAM | ground truth (when given) crops of one region, each enlarged to ``zoom``
    pixels with nearest-neighbour so single pixels stay visible. ``center`` is (x, y) as fractions of the
    LR image; None picks the most detailed region. ``crop`` is in LR pixels. ``left`` replaces the bicubic
    panel with another (label, picture), e.g. another model's output. Returns uint8 (H, W, 3)."""
    s = comparison.info.scale
    lw, lh = comparison.lr.size
    crop = max(4, min(crop, lw, lh))
    if center is None:
        x0, y0 = most_detailed_region(comparison.lr, crop)
    else:
        x0 = int(round(center[0] * lw - crop / 2))
        y0 = int(round(center[1] * lh - crop / 2))
        x0, y0 = min(max(x0, 0), lw - crop), min(max(y0, 0), lh - crop)
    panels = [left or ("bicubic", comparison.bicubic), (right_label, comparison.output)]
    if comparison.truth is not None:
        panels.append(("ground truth", comparison.truth))
    tiles = []
    for label, pic in panels:
        region = preview_rgb(pic)[y0 * s : (y0 + crop) * s, x0 * s : (x0 + crop) * s]
        tile = Image.fromarray(region).resize((zoom, zoom), Image.NEAREST)
        draw = ImageDraw.Draw(tile)
        left, top, right, bottom = draw.textbbox((4, 3), label)
        draw.rectangle((0, 0, right + 4, bottom + 3), fill=(0, 0, 0))
        draw.text((4, 3), label, fill=(255, 255, 255))
        tiles.append(np.asarray(tile))
    gap = np.full((zoom, 6, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [gap, tile]
    return np.hstack(row)
