"""Super-resolution of whole images: precision choice, exact tiling, self-ensemble, progress.

Balanced attention pools each feature map over the whole image, so the LR-resolution trunk (head,
pre-process, body) is always computed on the whole image, exactly; only the upsampler and tail,
which are purely local 3x3 convolutions at HR resolution, are tiled, with a halo wide enough that
every tile sees exactly the context it would see in one pass. The result equals whole-image
inference up to floating-point summation order, while the memory of the HR stage, the largest,
is bounded by the tile size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Literal

import torch

from mdsr.model import MDSR

Precision = Literal["auto", "fp32", "bf16"]
ProgressCallback = Callable[[int, int], None]

# Receptive radius of the HR stage in LR pixels: one 3x3 conv per upsampling step (at LR, then at
# 2x for x4) and the 3x3 tail at HR; 2 LR pixels cover every scale.
HALO = 2


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """True where bf16 convolutions are native: CUDA with bf16, or a CPU with AVX-512 BF16 / AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: Precision, device: torch.device | str = "cpu") -> Literal["fp32", "bf16"]:
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if precision == "bf16" and not bf16_supported(device):
        raise ValueError(f"bf16 is not supported on this {torch.device(device).type} device; use fp32")
    return precision


def autocast(precision: Literal["fp32", "bf16"], device: torch.device | str = "cpu"):
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.inference_mode()
def super_resolve(
    model: MDSR, lr: torch.Tensor, scale: int, *, precision: Precision = "fp32", tile: int | None = None,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (1, 3, H*s, W*s) float, clamped to [0, 1].

    ``tile`` (LR pixels) bounds the HR stage's memory; None runs it whole.
    """
    model.check_scale(scale)
    device = next(model.parameters()).device
    mode = resolve_precision(precision, device)
    lr = lr.to(device)
    with autocast(mode, device):
        feats = model.features(lr, scale)
        _, _, h, w = feats.shape
        tiles = _tile_boxes(h, w, tile)
        out = torch.empty((1, 3, h * scale, w * scale), dtype=torch.float32, device=device)
        for n, (y0, y1, x0, x1) in enumerate(tiles, start=1):
            # Pad the tile with its halo, run the local HR stage, keep only the tile's own pixels.
            py0, py1, px0, px1 = max(y0 - HALO, 0), min(y1 + HALO, h), max(x0 - HALO, 0), min(x1 + HALO, w)
            hr = model.reconstruct(feats[:, :, py0:py1, px0:px1], scale).float()
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = hr[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
            if progress is not None:
                progress(n, len(tiles))
    return out.clamp_(0, 1)


def _tile_boxes(h: int, w: int, tile: int | None) -> list[tuple[int, int, int, int]]:
    if tile is None or tile >= max(h, w):
        return [(0, h, 0, w)]
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    return [
        (r * tile, min((r + 1) * tile, h), c * tile, min((c + 1) * tile, w)) for r in range(rows) for c in range(cols)
    ]
