"""The super-image model card's API over this package, so that code written for the card works after
changing one import: ``from mdsr import MdsrModel, ImageLoader``.

    model = MdsrModel.from_pretrained('eugenesiow/mdsr-bam', scale=2)
    inputs = ImageLoader.load_image(image)
    preds = model(inputs)
    ImageLoader.save_image(preds, './scaled_2x.png')
    ImageLoader.save_compare(inputs, preds, './scaled_2x_compare.png')

Tensors are float RGB (1, 3, H, W) in [0, 1], as in super-image.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from mdsr.imaging import array_to_tensor, bicubic_upscale, read_rgb8, tensor_to_array, to_uint
from mdsr.inference import super_resolve
from mdsr.model import MDSR
from mdsr.weights import load_model


class MdsrModel(torch.nn.Module):
    """One scale of an MDSR model, called like super-image's: ``model(inputs)``."""

    def __init__(self, model: MDSR, scale: int) -> None:
        super().__init__()
        model.check_scale(scale)
        self.model = model
        self.scale = scale

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, *, scale: int) -> MdsrModel:
        """A Hub id, a super-image folder, a ``.safetensors`` file, or None for the bundled weights."""
        return cls(load_model(source, scale=scale), scale)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super_resolve(self.model, inputs, self.scale, precision="fp32", tile=None, edge_padding=0)


class ImageLoader:
    @staticmethod
    def load_image(image: Image.Image) -> torch.Tensor:
        """PIL image -> (1, 3, H, W) float tensor in [0, 1]."""
        return array_to_tensor(read_rgb8(image))

    @staticmethod
    def save_image(pred: torch.Tensor, output_file: str | os.PathLike) -> None:
        Image.fromarray(to_uint(tensor_to_array(pred))).save(output_file)

    @staticmethod
    def save_compare(inputs: torch.Tensor, pred: torch.Tensor, output_file: str | os.PathLike) -> None:
        """Bicubic upscale of the input beside the prediction, side by side."""
        lr, sr = to_uint(tensor_to_array(inputs)), to_uint(tensor_to_array(pred))
        bicubic = bicubic_upscale(lr, sr.shape[0] // lr.shape[0])
        Image.fromarray(np.hstack([bicubic, sr])).save(output_file)
