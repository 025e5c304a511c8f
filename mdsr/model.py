"""MDSR-BAM: the multi-scale EDSR network (Lim et al. 2017) with balanced attention (Wang et al. 2021).

I/O contract: ``forward(x, scale)`` takes RGB in [0, 1] as a float tensor (B, 3, H, W) and returns
(B, 3, H*scale, W*scale) in roughly [0, 1] (not clamped). No mean shift is applied, as in
super-image, whose ``sub_mean``/``add_mean`` weights are saved but unused.

Layout and parameter names follow super-image's ``MdsrModel`` (``head.0.0.weight``,
``pre_process.2.0.body.0.0.weight``, ``body.32.0.weight``, ``upsample.4.2.0.weight``,
``tail.0.0.weight``): a super-image checkpoint for one scale is this model with ``scales=(s,)``.
Unlike super-image, one model may hold several scales sharing head, body and tail, as in the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mdsr.attention import BalancedAttention

SUPPORTED_SCALES = (2, 3, 4)


@dataclass(frozen=True)
class MdsrConfig:
    """The architecture, and nothing else: checkpoints carry it so they rebuild themselves."""

    n_resblocks: int = 32
    n_feats: int = 64
    res_scale: float = 0.1
    bam: bool = True
    scales: tuple[int, ...] = SUPPORTED_SCALES
    reduction: int = 16

    def __post_init__(self) -> None:
        if not self.scales or any(s not in SUPPORTED_SCALES for s in self.scales):
            raise ValueError(f"scales must be a non-empty subset of {SUPPORTED_SCALES}, got {self.scales}")
        if self.n_feats % self.reduction:
            raise ValueError(f"n_feats ({self.n_feats}) must be divisible by reduction ({self.reduction})")
        object.__setattr__(self, "scales", tuple(sorted(set(int(s) for s in self.scales))))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MdsrConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "scales" in known:
            known["scales"] = tuple(known["scales"])
        return cls(**known)


def conv3x3(c_in: int, c_out: int) -> nn.Sequential:
    # Wrapped in Sequentials only so the parameter names match super-image ("body.32.0.weight").
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1))


class ResBlock(nn.Module):
    """x + res_scale * attention(conv(relu(conv(x))))."""

    def __init__(self, *, n_feats: int, res_scale: float, bam: bool, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats))
        self.res_scale = res_scale
        self.attention = BalancedAttention(n_feats=n_feats, reduction=reduction) if bam else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.attention is not None:
            res = self.attention(res)
        return res.mul(self.res_scale) + x


class Upsampler(nn.Sequential):
    """x2 and x3: conv to s*s*C channels, PixelShuffle(s); x4: the x2 stage twice."""

    def __init__(self, *, scale: int, n_feats: int) -> None:
        steps = [2, 2] if scale == 4 else [scale]
        layers: list[nn.Module] = []
        for s in steps:
            layers += [conv3x3(n_feats, s * s * n_feats), nn.PixelShuffle(s)]
        super().__init__(*layers)


class MDSR(nn.Module):
    def __init__(self, config: MdsrConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MdsrConfig()
        block = dict(n_feats=config.n_feats, res_scale=config.res_scale, bam=config.bam, reduction=config.reduction)
        self.head = nn.Sequential(conv3x3(3, config.n_feats))
        self.pre_process = nn.ModuleDict(
            {str(s): nn.Sequential(ResBlock(**block), ResBlock(**block)) for s in config.scales}
        )
        self.body = nn.Sequential(
            *[ResBlock(**block) for _ in range(config.n_resblocks)], conv3x3(config.n_feats, config.n_feats)
        )
        self.upsample = nn.ModuleDict({str(s): Upsampler(scale=s, n_feats=config.n_feats) for s in config.scales})
        self.tail = nn.Sequential(conv3x3(config.n_feats, 3))

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    def check_scale(self, scale: int) -> None:
        if scale not in self.config.scales:
            raise ValueError(f"this model upscales by {', '.join(map(str, self.scales))}; got scale {scale}")

    def features(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """LR-resolution features before upsampling: (B, 3, H, W) -> (B, C, H, W)."""
        self.check_scale(scale)
        x = self.pre_process[str(scale)](self.head(x))
        return self.body(x) + x

    def reconstruct(self, features: torch.Tensor, scale: int) -> torch.Tensor:
        """Upsampler and tail, purely local (3x3 convs): (B, C, H, W) -> (B, 3, H*s, W*s)."""
        return self.tail(self.upsample[str(scale)](features))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.reconstruct(self.features(x, scale), scale)
