"""MDSR-BAM super-resolution: the network, its weights, MATLAB-exact bicubic, metrics and tiled inference."""

from __future__ import annotations

from mdsr.compat import ImageLoader, MdsrModel
from mdsr.imaging import ImageError, Picture, read_image
from mdsr.inference import PreparedModels, upscale, upscale_picture
from mdsr.model import MDSR, MdsrConfig
from mdsr.weights import WeightsError, load_model, save_weights

__all__ = [
    "MDSR",
    "ImageError",
    "ImageLoader",
    "MdsrConfig",
    "MdsrModel",
    "Picture",
    "PreparedModels",
    "WeightsError",
    "load_model",
    "read_image",
    "save_weights",
    "upscale",
    "upscale_picture",
]
__version__ = "0.1.0"
