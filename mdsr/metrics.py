"""PSNR and SSIM as the super-resolution literature reports them.

The standard protocol (EDSR, RCAN, SwinIR, BasicSR's ``psnr_ssim.py``): both images are uint8 RGB
(the model output rounded to uint8 first); they are converted to the Y channel of YCbCr with
ITU-R BT.601 (Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, for R, G, B in [0, 1]), ``shave``
pixels (= the scale) are cropped from every border, and PSNR/SSIM are computed on Y with a data range
of 255. SSIM uses an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03 and population
statistics (scikit-image's ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``).
The RGB variants skip the Y conversion and average SSIM over the three channels.
Inputs are uint8 arrays (H, W, 3) or (H, W); a grey image is expanded to RGB first (R = G = B); anything
else (floats in [0, 1], 16 bits) is refused rather than measured on the wrong scale. Images of more than
``BAND_PIXELS`` are measured in bands of rows (SSIM's with the 5 rows of context its window needs), which
gives the same numbers up to the order of floating-point sums, in a fraction of the memory.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

BT601 = np.array([65.481, 128.553, 24.966])
BAND_PIXELS = 1 << 20  # about 100 MB of SSIM's float64 maps a band
SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): the Gaussian window's reach, and what skimage crops from each border
SSIM_WINDOW = 2 * SSIM_RADIUS + 1  # the smallest side skimage measures (its "win_size exceeds image extent")


def rgb_to_y(img: np.ndarray, coefficients: np.ndarray = BT601) -> np.ndarray:
    """Y of YCbCr (BT.601, studio range 16..235) as float64 in [0, 255] from uint8 RGB (H, W, 3)."""
    img = _as_rgb(img).astype(np.float64) / 255.0
    return img @ coefficients + 16.0


def _as_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ValueError(f"expected an RGB (H, W, 3) or grey (H, W) image, got shape {img.shape}")


def _check(output: np.ndarray, truth: np.ndarray, shave: int) -> tuple[int, int]:
    for name, img in (("output", output), ("ground truth", truth)):
        if img.dtype != np.uint8:
            raise ValueError(f"the {name} must be 8-bit (uint8) values in 0..255, not {img.dtype}")
    if output.shape[:2] != truth.shape[:2]:
        raise ValueError(
            f"output is {output.shape[1]}x{output.shape[0]} but ground truth is {truth.shape[1]}x{truth.shape[0]}"
        )
    h, w = truth.shape[:2]
    if min(h, w) <= 2 * shave:
        raise ValueError(f"a {w}x{h} image is too small to measure with {shave} pixels shaved off each border")
    return h - 2 * shave, w - 2 * shave


def _planes(img: np.ndarray, shave: int, rows: tuple[int, int], y_channel: bool) -> np.ndarray:
    """Rows [a, b) of the shaved image: Y (float64) or RGB."""
    h, w = img.shape[:2]
    part = img[shave + rows[0] : shave + rows[1], shave : w - shave]
    return rgb_to_y(part) if y_channel else _as_rgb(part).astype(np.float64)


def _whole(img: np.ndarray, shave: int, y_channel: bool) -> np.ndarray:
    """The shaved image, converted whole and then cropped (the literature's tables were made so, and the
    pinned scores are reproduced so)."""
    planes = rgb_to_y(img) if y_channel else _as_rgb(img).astype(np.float64)
    return planes[shave:-shave, shave:-shave] if shave else planes


def _bands(height: int, width: int, context: int = 0) -> list[tuple[int, int, int, int]]:
    """(a, b, y0, y1): rows [y0, y1) measured from rows [a, b) read with ``context`` rows on each side."""
    rows = height if height * width <= BAND_PIXELS else max(4 * context + 1, BAND_PIXELS // width)
    return [
        (max(y0 - context, 0), min(y0 + rows + context, height), y0, min(y0 + rows, height))
        for y0 in range(0, height, rows)
    ]


def psnr(output: np.ndarray, truth: np.ndarray, *, shave: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB between uint8 images, standard protocol (see module docstring)."""
    h, w = _check(output, truth, shave)
    bands = _bands(h, w)
    if len(bands) == 1:
        a, b = _whole(output, shave, y_channel), _whole(truth, shave, y_channel)
        return float("inf") if np.array_equal(a, b) else float(peak_signal_noise_ratio(b, a, data_range=255))
    squared = sum(
        float(np.sum((_planes(output, shave, (a, b), y_channel) - _planes(truth, shave, (a, b), y_channel)) ** 2))
        for a, b, _, _ in bands
    )
    mse = squared / (h * w * (1 if y_channel else 3))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(output: np.ndarray, truth: np.ndarray, *, shave: int = 0, y_channel: bool = True) -> float:
    """SSIM between uint8 images, standard protocol (see module docstring)."""
    h, w = _check(output, truth, shave)
    options: dict[str, object] = dict(data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    options["channel_axis"] = None if y_channel else 2
    bands = _bands(h, w, SSIM_RADIUS)
    if len(bands) == 1:
        return float(
            structural_similarity(_whole(truth, shave, y_channel), _whole(output, shave, y_channel), **options)
        )
    # skimage averages its SSIM map without the window's reach at each border: rows and columns alike
    total, count, r = 0.0, 0, SSIM_RADIUS
    for a, b, y0, y1 in bands:
        _, full = structural_similarity(
            _planes(truth, shave, (a, b), y_channel), _planes(output, shave, (a, b), y_channel), full=True, **options
        )
        keep = full[max(y0, r) - a : min(y1, h - r) - a, r : w - r]
        total, count = total + float(keep.sum(dtype=np.float64)), count + keep.size
    return total / count
