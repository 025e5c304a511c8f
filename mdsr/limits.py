"""What one request may cost, checked before any work is done: the work (output pixels times network
passes) and the estimated peak memory. A server sets the bounds (the demo's are in ``app.py``); errors
are ``ValueError``s whose message states the request's figure and the limit it passed."""

from __future__ import annotations

from typing import Literal

EDGE = 8  # the input's edge replicated by 4 pixels on each side (mdsr.inference.EDGE_PADDING)
# The trunk's own memory per pixel of the (edge-padded) input, measured in fresh processes (fp32 or int8;
# bundled weights, 64 channels): the whole-image trunk holds three float maps at once; the streamed trunk
# one map, plus its stripes (~STREAMED_STRIPES_MB).
WHOLE_TRUNK_BYTES = 850
STREAMED_TRUNK_BYTES = 260
STREAMED_STRIPES_MB = 250


def trunk_mb(size: tuple[int, int], trunk: Literal["whole", "streamed"]) -> float:
    """The trunk's peak memory (MB, beyond the process at rest) for an input of ``size`` (width, height)."""
    pixels = (size[0] + EDGE) * (size[1] + EDGE)
    if trunk == "whole":
        return WHOLE_TRUNK_BYTES * pixels / 1e6
    return STREAMED_TRUNK_BYTES * pixels / 1e6 + STREAMED_STRIPES_MB


def estimated_peak_mb(input_pixels: int, output_pixels: int, *, full_views: bool) -> float:
    """Peak RSS of a server process for one request, from measurements (fresh process, bundled weights,
    fp32 on the CPU): ~410 MB at rest, ~850 bytes per input pixel for the whole-image trunk, and per output
    pixel ~25 bytes for the PNG alone or ~140 with the bicubic view, a ground truth and its PSNR/SSIM
    (measured 1.44 GB at 1095x1095 x2 without them; 1.11 GB at 512x512 x4 and 3.20 GB at 1024x1024 x4 with
    a ground truth)."""
    return 410 + 850e-6 * input_pixels + (140e-6 if full_views else 25e-6) * output_pixels


def check_memory(size: tuple[int, int], scale: int, *, full_views: bool, limit_mb: float) -> None:
    """An input of ``size`` (width, height) at ``scale`` may need at most ``limit_mb`` (``estimated_peak_mb``)."""
    w, h = size
    need = estimated_peak_mb(w * h, w * h * scale * scale, full_views=full_views)
    if need > limit_mb:
        views = " with the bicubic view and ground-truth metrics" if full_views else ""
        raise ValueError(
            f"a {w}x{h} image at {scale}x{views} needs about {need:,.0f} MB; the limit per request is "
            f"{limit_mb:,} MB (use a smaller image or scale)"
        )


def check_work(size: tuple[int, int], scale: int, *, self_ensemble: bool, models: int = 1, limit: int) -> None:
    """At most ``limit`` output pixels times network passes: 8 passes for self-ensemble, and each for
    every model an A/B comparison runs."""
    w, h = size
    passes = (8 if self_ensemble else 1) * models
    work = h * w * scale * scale * passes
    if work > limit:
        ensemble = "self-ensemble" + (": 8 each" if models > 1 else "")
        why = ", ".join(([f"{models} models (A/B)"] if models > 1 else []) + ([ensemble] if self_ensemble else []))
        what = f"{w * scale}x{h * scale} output pixels" + (f" x {passes} passes ({why})" if passes > 1 else "")
        raise ValueError(f"this request is {what} = {work:,}; the limit per request is {limit:,}")
