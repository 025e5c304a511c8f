"""Images in and out: MATLAB-exact bicubic resizing and the PIL <-> tensor edge of the package.

Resizing follows MATLAB's ``imresize(img, scale, 'bicubic')`` exactly, as the super-resolution
literature's LR images were made with it (and as BasicSR's ``matlab_functions.imresize`` does):
cubic kernel with a = -0.5; when shrinking, antialiasing stretches the kernel by 1/scale (support
4/scale input pixels) and each output pixel's weights are renormalised to sum to 1; output pixel i
(1-based) is centred at input coordinate i/scale + 0.5*(1 - 1/scale); rows (height) are resized
before columns (width); an integer image is rounded half away from zero and clipped to its type's
range after each of the two passes, a float image is not rounded. The border is ``"symmetric"``
(modern MATLAB mirrors the image; the EDSR/DIV2K convention, default) or ``"replicate"`` (older
MATLAB clamps indices; the SelfExSR benchmark pack). Contributions are accumulated in index order in
float64, as MATLAB does, so that ties round the same way and every LR file is reproduced bit for bit.

At the edges the package speaks PIL; inside it speaks float RGB tensors in [0, 1], shape (1, 3, H, W).
``pil_to_tensor``/``tensor_to_pil`` are the one pair of conversions (rounding before casting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps

Border = Literal["symmetric", "replicate"]


# --------------------------------------------------------------------------------------------------
# MATLAB bicubic
# --------------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _contributions(in_len: int, out_len: int, scale: float, border: Border) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len, P) and 0-based source indices (out_len, P) along one axis, as MATLAB's
    ``contributions`` computes them."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    idx = idx.astype(np.int64) - 1  # 0-based
    if border == "symmetric":
        period = 2 * in_len
        idx = np.mod(idx, period)
        idx = np.where(idx < in_len, idx, period - 1 - idx)
    elif border == "replicate":
        idx = np.clip(idx, 0, in_len - 1)
    else:
        raise ValueError(f"border must be 'symmetric' or 'replicate', got {border!r}")
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero columns
    return weights[:, keep], idx[:, keep]


def _resize_axis(img: np.ndarray, out_len: int, scale: float, border: Border, axis: int) -> np.ndarray:
    weights, idx = _contributions(img.shape[axis], out_len, scale, border)
    src = np.moveaxis(img, axis, 0).astype(np.float64, copy=False)
    out = np.zeros((out_len,) + src.shape[1:], dtype=np.float64)
    extra = (slice(None),) + (None,) * (src.ndim - 1)
    for k in range(weights.shape[1]):  # in index order, like MATLAB
        out += weights[:, k][extra] * src[idx[:, k]]
    return np.moveaxis(out, 0, axis)


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded = np.where(values >= 0, np.floor(values + 0.5), np.ceil(values - 0.5))  # half away from zero
        return np.clip(rounded, info.min, info.max).astype(dtype)
    return values.astype(dtype)


def imresize(img: np.ndarray, scale: float, *, border: Border = "symmetric", size: tuple[int, int] | None = None) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` of an (H, W) or (H, W, C) array.

    ``size`` (H, W) overrides the output size, which otherwise is ``ceil(H * scale), ceil(W * scale)``,
    as MATLAB computes it. Integer arrays keep their dtype with MATLAB's rounding after each pass.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    h, w = img.shape[:2]
    out_h, out_w = size if size is not None else (math.ceil(h * scale), math.ceil(w * scale))
    if min(out_h, out_w) < 1:
        raise ValueError(f"resizing {w}x{h} by {scale} leaves no pixels")
    out = _cast_like(_resize_axis(img, out_h, scale, border, axis=0), img.dtype)
    return _cast_like(_resize_axis(out, out_w, scale, border, axis=1), img.dtype)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that both sides are multiples of ``scale`` (the benchmarks' HR crop)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def downscale_array(hr: np.ndarray, scale: int, *, border: Border = "symmetric") -> np.ndarray:
    """The literature's LR image: HR cropped to a multiple of ``scale``, then ``imresize(hr, 1/scale)``."""
    hr = modcrop(hr, scale)
    if min(hr.shape[:2]) < scale:
        raise ValueError(f"a {hr.shape[1]}x{hr.shape[0]} image is too small to downscale by {scale}")
    return imresize(hr, 1 / scale, border=border, size=(hr.shape[0] // scale, hr.shape[1] // scale))


def upscale_array(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(lr, scale, 'bicubic')``: the bicubic baseline of the literature's tables."""
    return imresize(lr, scale, size=(lr.shape[0] * scale, lr.shape[1] * scale))


# --------------------------------------------------------------------------------------------------
# PIL <-> arrays and tensors
# --------------------------------------------------------------------------------------------------


def pil_to_array(image: Image.Image) -> np.ndarray:
    """Any PIL image as uint8 RGB (H, W, 3), EXIF orientation applied (for training and metrics)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257.0).round().clip(0, 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def load_image_array(path: str | bytes) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3)."""
    with Image.open(path) as image:
        image.seek(0)
        return pil_to_array(image)


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or float [0, 1] (H, W, 3) -> float tensor (1, 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]
    return t.float().div_(255.0) if array.dtype == np.uint8 else t.float()


def tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (1, 3, H, W) in [0, 1] -> uint8 (H, W, 3), clamped and rounded before the cast."""
    t = tensor.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return t[0].permute(1, 2, 0).cpu().numpy()


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> float RGB tensor (1, 3, H, W) in [0, 1]."""
    return array_to_tensor(pil_to_array(image))


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float RGB tensor (1, 3, H, W) in [0, 1] -> uint8 RGB PIL image."""
    return Image.fromarray(tensor_to_array(tensor))
