"""Balanced attention (Wang et al. 2021), laid out exactly as super-image's ``BamBlock``.

The module and parameter names (``ca.fc1``, ``ca.relu1``, ``ca.fc2``, ``sa.conv1``) are part of the
state-dict contract: published ``eugenesiow/mdsr-bam`` checkpoints load into them unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from mdsr import kernels


class ChannelAttention(nn.Module):
    """Squeeze-and-excite over channels: global average pool -> 1x1 -> PReLU -> 1x1 -> sigmoid."""

    def __init__(self, *, n_feats: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = n_feats // reduction
        self.fc1 = nn.Conv2d(n_feats, hidden, 1, bias=False)
        self.relu1 = nn.PReLU(hidden)
        self.fc2 = nn.Conv2d(hidden, n_feats, 1, bias=False)

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Gate from an already pooled (B, C, 1, 1) mean; lets tiled inference pool in pieces."""
        return torch.sigmoid(self.fc2(self.relu1(self.fc1(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pooled(x.mean(dim=(2, 3), keepdim=True))  # (B, C, 1, 1)


class SpatialAttention(nn.Module):
    """Per-pixel gate: max over channels -> 7x7 conv -> sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv1(x.amax(dim=1, keepdim=True)))  # (B, 1, H, W)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` for inference: the 7x7 convolution of the one-channel map as 49 shifted multiply-adds
        (the same sum in another order). oneDNN's single-channel convolution slows to ~30 ns per pixel on
        maps past a few hundred thousand pixels (33 ms at 908x1208, against 3 ms this way), and it runs
        once per residual block."""
        peak = x.amax(dim=1, keepdim=True).float()  # float sums, also under bf16 autocast
        k = self.conv1.kernel_size[0]
        r, (h, w) = k // 2, peak.shape[2:]
        padded = functional.pad(peak, (r, r, r, r))
        out = torch.zeros_like(peak)
        for i, row in enumerate(self.conv1.weight.reshape(k, k).tolist()):
            for j, tap in enumerate(row):
                out.add_(padded[:, :, i : i + h, j : j + w], alpha=tap)
        return out.sigmoid_().to(x.dtype)  # bf16 maps take a bf16 gate: a mixed-dtype product is slow


class BalancedAttention(nn.Module):
    """out = (channel gate * spatial gate) * x, in super-image's order of multiplication."""

    def __init__(self, *, n_feats: int, reduction: int = 16) -> None:
        super().__init__()
        self.ca = ChannelAttention(n_feats=n_feats, reduction=reduction)
        self.sa = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ca(x).mul(self.sa(x)) * x

    def infer_into(
        self, res: torch.Tensor, skip: torch.Tensor, channel: torch.Tensor, peak: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inference: ``skip + (res * spatial gate) * channel``, written into ``res``, for a ``channel`` gate
        already made (the channel attention times the block's res_scale, (1, C, 1, 1)); ``peak`` is ``res``'s
        maximum over channels where known. Two passes over the map with ``mdsr.kernels``, else eager's four."""
        if kernels.fits(res, skip) and kernels.available():
            if peak is None:
                _, peak = kernels.channel_mean_and_peak(res)
            return kernels.gate_and_add(res, kernels.spatial_gate(peak, self.sa.conv1.weight), channel, skip)
        res.mul_(self.sa.infer(res))  # (B, C, H, W) * (B, 1, H, W)
        return torch.addcmul(skip, res, channel, out=res)
