"""MDSR-BAM super-resolution: the network, its weights, MATLAB-exact bicubic, metrics and tiled inference."""

from __future__ import annotations

from mdsr.model import MDSR, MdsrConfig
from mdsr.weights import WeightsError, load_model, save_weights

__all__ = ["MDSR", "MdsrConfig", "WeightsError", "load_model", "save_weights"]
__version__ = "0.1.0"
