"""PSNR and SSIM as the super-resolution literature reports them.

The standard protocol (EDSR, RCAN, SwinIR, BasicSR's ``psnr_ssim.py``): both images are uint8 RGB
(the model output rounded to uint8 first); they are converted to the Y channel of YCbCr with
ITU-R BT.601 (Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, for R, G, B in [0, 1]), ``shave``
pixels (= the scale) are cropped from every border, and PSNR/SSIM are computed on Y with a data range
of 255. SSIM uses an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03 and population
statistics (scikit-image's ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``).
The RGB variants skip the Y conversion and average SSIM over the three channels.
Inputs are uint8 arrays (H, W, 3) or (H, W); a grey image is expanded to RGB first (R = G = B).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

BT601 = np.array([65.481, 128.553, 24.966])


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


def _prepare(output: np.ndarray, truth: np.ndarray, shave: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if output.shape[:2] != truth.shape[:2]:
        raise ValueError(
            f"output is {output.shape[1]}x{output.shape[0]} but ground truth is {truth.shape[1]}x{truth.shape[0]}"
        )
    h, w = truth.shape[:2]
    if min(h, w) <= 2 * shave:
        raise ValueError(f"a {w}x{h} image is too small to measure with {shave} pixels shaved off each border")
    if y_channel:
        a, b = rgb_to_y(output), rgb_to_y(truth)
    else:
        a, b = _as_rgb(output).astype(np.float64), _as_rgb(truth).astype(np.float64)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    return a, b


def psnr(output: np.ndarray, truth: np.ndarray, *, shave: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB between uint8 images, standard protocol (see module docstring)."""
    a, b = _prepare(output, truth, shave, y_channel)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(b, a, data_range=255))


def ssim(output: np.ndarray, truth: np.ndarray, *, shave: int = 0, y_channel: bool = True) -> float:
    """SSIM between uint8 images, standard protocol (see module docstring)."""
    a, b = _prepare(output, truth, shave, y_channel)
    return float(
        structural_similarity(
            b,
            a,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=None if y_channel else 2,
        )
    )
