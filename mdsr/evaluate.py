"""Benchmark evaluation: the PSNR/SSIM table of the literature (and of the super-image model card).

Protocols:
- ``standard`` (default), the literature's: HR cropped to a multiple of s, LR from the benchmark's
  ``LR_bicubic*`` files when present (else made with the MATLAB bicubic, symmetric border), output
  rounded to uint8, PSNR/SSIM on Y (BT.601) with ``shave = s`` (see ``mdsr.metrics``).
- ``super-image``, how the ``eugenesiow/mdsr-bam`` card's table was measured: LR by PIL bicubic from
  the uncropped HR; HR bicubic-resized (PIL) to LR size times s when not divisible; Y with
  super-image's coefficient 64.738 for R (a typo for 65.481); shave = s; the prediction clamped but
  not rounded; SSIM Gaussian 11x11, sigma 1.5. Its numbers are not comparable with the standard ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from mdsr.imaging import downscale_array, load_image_array, modcrop, upscale_array
from mdsr.inference import Precision, super_resolve
from mdsr.imaging import array_to_tensor, tensor_to_array
from mdsr.metrics import psnr, ssim
from mdsr.model import MDSR

Protocol = Literal["standard", "super-image"]
SUPER_IMAGE_Y = np.array([64.738, 128.553, 24.966])


@dataclass
class Pair:
    name: str
    lr: np.ndarray  # uint8 (h, w, 3)
    hr: np.ndarray  # uint8 (h*s, w*s, 3)


def load_benchmark(folder: str | os.PathLike, scale: int) -> list[Pair]:
    """The (LR, HR) pairs of a benchmark folder at one scale, standard protocol."""
    folder = Path(folder)
    hr_dir = folder / "HR"
    if not hr_dir.is_dir():
        raise FileNotFoundError(f"{folder} has no HR/ folder of ground-truth images")
    lr_dirs = [folder / "LR_bicubic_symmetric" / f"X{scale}", folder / "LR_bicubic" / f"X{scale}"]
    pairs = []
    for path in sorted(p for p in hr_dir.iterdir() if p.is_file()):
        hr = modcrop(load_image_array(path), scale)
        lr_file = next((d / f"{path.stem}x{scale}.png" for d in lr_dirs if (d / f"{path.stem}x{scale}.png").exists()), None)
        lr = load_image_array(lr_file) if lr_file else downscale_array(hr, scale)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise ValueError(f"{lr_file}: LR size does not match HR {path.name} at x{scale}")
        pairs.append(Pair(path.stem, lr, hr))
    if not pairs:
        raise FileNotFoundError(f"{hr_dir} holds no images")
    return pairs


def validate(model: MDSR, pairs: list[Pair], scale: int, *, precision: Precision = "fp32") -> float:
    """Mean standard-protocol PSNR of ``model`` over ``pairs``."""
    scores = [psnr(tensor_to_array(super_resolve(model, array_to_tensor(p.lr), scale, precision=precision)), p.hr, shave=scale) for p in pairs]
    return float(np.mean(scores))
