"""The demo's views of a comparison: error maps, the zoom panel, the region outline and the lines of text
under the slider. Pictures in, uint8 (H, W, 3) arrays or Markdown out."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from mdsr.compare import Comparison, most_detailed_region
from mdsr.imaging import Picture, rgb8, to_uint
from mdsr.metrics import BAND_PIXELS, rgb_to_y
from mdsr.serving import ItemResult
from mdsr.weights import LoadedWeights


def error_map(output: Picture, truth: Picture, gain: float = 4.0) -> np.ndarray:
    """|output - truth| on the Y channel, amplified ``gain`` times, as a uint8 heat map (H, W, 3); made in
    bands of rows, so that large pictures need little more than the map itself."""
    h, w = output.rgb.shape[:2]
    heat = np.empty((h, w, 3), np.uint8)
    rows = max(1, BAND_PIXELS // w)
    for y0 in range(0, h, rows):
        diff = np.abs(rgb_to_y(rgb8(_rows(output, y0, y0 + rows))) - rgb_to_y(rgb8(_rows(truth, y0, y0 + rows))))
        level = np.clip(diff * gain / 255.0, 0, 1)
        # black -> red -> yellow -> white, so small errors stay dark and large ones stand out
        heat[y0 : y0 + rows] = to_uint(np.stack([np.clip(level * 3 - k, 0, 1) for k in range(3)], axis=2))
    return heat


def _rows(pic: Picture, y0: int, y1: int) -> Picture:
    return replace(pic, rgb=pic.rgb[y0:y1], alpha=None if pic.alpha is None else pic.alpha[y0:y1])


def region_outline(overview: np.ndarray, whole: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
    """The small ``overview`` of a ``whole`` (width, height) photo with ``region`` (x, y, w, h, in the whole
    photo's pixels) outlined: where the upscaled part came from."""
    step = whole[0] / overview.shape[1]
    preview = Image.fromarray(overview)
    x0, y0, cw, ch = (v / step for v in region)
    ImageDraw.Draw(preview).rectangle((x0, y0, x0 + cw, y0 + ch), outline=(255, 40, 40), width=3)
    return np.asarray(preview)


@dataclass(frozen=True)
class ZoomView:
    """What the zoom panel shows, in 8 bits (3 bytes a pixel, so that a session can keep it to re-zoom):
    the network's input, where the most detailed region is looked for, and the labelled pictures, left to
    right (e.g. bicubic | MDSR-BAM | ground truth), each the output's size."""

    lr: np.ndarray
    panels: tuple[tuple[str, np.ndarray], ...]


def zoom_box(
    view: ZoomView, center: tuple[float, float] | None, *, zoom: int = 256, magnification: int = 2
) -> tuple[int, int, int]:
    """(x0, y0, side) in input pixels of the zoomed region: the output's pixels shown at ``magnification``:1
    in ``zoom``-pixel panels, around ``center`` (fractions of the image) or the most detailed region."""
    lh, lw = view.lr.shape[:2]
    ratio = view.panels[0][1].shape[1] / lw  # the output's pixels per input pixel (2, 3, 4 or 1.5)
    crop = min(max(4, round(zoom / magnification / ratio)), lw, lh)
    if center is None:
        x0, y0 = most_detailed_region(view.lr, crop)
    else:
        x0 = int(round(center[0] * lw - crop / 2))
        y0 = int(round(center[1] * lh - crop / 2))
        x0, y0 = min(max(x0, 0), lw - crop), min(max(y0, 0), lh - crop)
    return x0, y0, crop


def zoom_panel(
    view: ZoomView, *, center: tuple[float, float] | None = None, zoom: int = 256, magnification: int = 2
) -> np.ndarray:
    """The panels' crops of one region side by side, each ``zoom`` pixels square, showing the output's
    pixels at ``magnification``:1 (nearest-neighbour, so single pixels stay visible). ``center`` is (x, y)
    as fractions of the image; None picks the most detailed region. Returns uint8 (H, W, 3)."""
    lh, lw = view.lr.shape[:2]
    x0, y0, crop = zoom_box(view, center, zoom=zoom, magnification=magnification)
    tiles = []
    for label, rgb in view.panels:
        sy, sx = rgb.shape[0] / lh, rgb.shape[1] / lw  # the output's pixels per input pixel (2, 3, 4 or 1.5)
        region = rgb[round(y0 * sy) : round((y0 + crop) * sy), round(x0 * sx) : round((x0 + crop) * sx)]
        tile = Image.fromarray(np.ascontiguousarray(region)).resize((zoom, zoom), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        _, _, right, bottom = draw.textbbox((4, 3), label)
        draw.rectangle((0, 0, right + 4, bottom + 3), fill=(0, 0, 0))
        draw.text((4, 3), label, fill=(255, 255, 255))
        tiles.append(np.asarray(tile))
    gap = np.full((zoom, 6, 3), 255, np.uint8)
    row = [tiles[0]]
    for picture in tiles[1:]:
        row += [gap, picture]
    return np.hstack(row)


def metrics_markdown(
    comparison: Comparison, other: Comparison | None = None, b_label: str = "", a_label: str = ""
) -> str:
    """PSNR/SSIM of bicubic and MDSR-BAM, or, in A/B mode, of bicubic, A and B and the difference A − B."""
    m = comparison.metrics
    if m is None:
        return "*No ground truth: choose one under **Ground truth** to see PSNR and SSIM.*"
    s = comparison.info.scale
    head = f"| x{s:g}, Y channel, {math.ceil(s)} px border shaved | PSNR (dB) | SSIM |\n| --- | --- | --- |\n"
    bicubic = f"| Bicubic | {m.bicubic.psnr:.2f} | {m.bicubic.ssim:.4f} |\n"
    if other is None:
        return (
            head + bicubic + f"| MDSR-BAM | {m.mdsr.psnr:.2f} | {m.mdsr.ssim:.4f} |\n"
            f"| **Gain** | **{m.gain_db:+.2f}** | |"
        )
    assert other.metrics is not None  # B ran on A's input against A's truth (serving.run_item)
    a, b = m.mdsr, other.metrics.mdsr
    return (
        head + bicubic + f"| {a_label} | {a.psnr:.2f} | {a.ssim:.4f} |\n"
        f"| {b_label} | {b.psnr:.2f} | {b.ssim:.4f} |\n"
        f"| **A − B** | **{a.psnr - b.psnr:+.2f}** | **{a.ssim - b.ssim:+.4f}** |"
    )


def info_markdown(comparison: Comparison, weights: LoadedWeights, notes: tuple[str, ...] = ()) -> str:
    i, lr, out = comparison.info, comparison.lr, comparison.output
    noted = "".join(f" · {n}" for n in notes)
    kind = ("grey" if out.grey else "colour") + (" + alpha" if out.alpha is not None else "") + f", {out.bit_depth}-bit"
    trunk = " · streamed trunk" if i.trunk == "streamed" else ""
    return (
        f"**Ran:** {weights.name} weights{f' ({weights.note})' if weights.note else ''}"
        f"{f' — {weights.about}' if weights.about else ''} · {i.device} · {i.precision} · {i.tiles} tile(s){trunk} · "
        f"{'self-ensemble · ' if i.self_ensemble else ''}{i.seconds:.2f} s · "
        f"{lr.size[0]}x{lr.size[1]} → {out.size[0]}x{out.size[1]} ({kind}){noted}"
    )


def region_markdown(result: ItemResult) -> str:
    """Which part of a photo over the limits was upscaled, and why not the whole."""
    if result.region is None:
        return ""
    x, y, w, h = result.region
    return (
        f" · **region:** the {w}x{h} part at ({x}, {y}) was upscaled, as the whole photo is over the demo's "
        f"limits ({result.over}); move it under **Region**"
    )


def full_size_crop(view: ZoomView, center: tuple[float, float] | None, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The slider's two pictures cut to a ``size``-pixel square of the output at full resolution (1:1),
    around ``center`` (fractions of the image) or the most detailed region."""
    (_, left), (_, right) = view.panels[:2]
    h, w = right.shape[:2]
    side_h, side_w = min(size, h), min(size, w)
    if center is None:
        lh, lw = view.lr.shape[:2]
        x0, y0 = most_detailed_region(view.lr, max(1, round(min(side_w * lw / w, side_h * lh / h))))
        cx, cy = (x0 + side_w * lw / w / 2) / lw, (y0 + side_h * lh / h / 2) / lh
    else:
        cx, cy = center
    x0 = min(max(round(cx * w - side_w / 2), 0), w - side_w)
    y0 = min(max(round(cy * h - side_h / 2), 0), h - side_h)
    left, right = (np.ascontiguousarray(p[y0 : y0 + side_h, x0 : x0 + side_w]) for p in (left, right))
    return left, right


def zoom_map(view: ZoomView, center: tuple[float, float] | None, longest: int = 220) -> np.ndarray:
    """A small picture of the whole output with the zoomed region outlined: where the zoom is, and where a
    click moves it."""
    out = view.panels[1][1]
    step = max(1, math.ceil(max(out.shape[:2]) / longest))
    small = Image.fromarray(np.ascontiguousarray(out[::step, ::step]))
    lh, lw = view.lr.shape[:2]
    x0, y0, crop = zoom_box(view, center)
    sx, sy = small.width / lw, small.height / lh
    box = (x0 * sx, y0 * sy, (x0 + crop) * sx, (y0 + crop) * sy)
    ImageDraw.Draw(small).rectangle(box, outline=(255, 40, 40), width=2)
    return np.asarray(small)
