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

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mdsr.attention import BalancedAttention

SUPPORTED_SCALES = (2, 3, 4)


def parse_scale(value: object) -> int:
    """A scale from an untrusted caller (an API payload): 2, 3 or 4 as a number (2.0 counts as 2);
    anything else, a string, a fraction, NaN, a list or nothing, is a ValueError naming the choices."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in SUPPORTED_SCALES:
        return int(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise ValueError(f"scale must be 2, 3 or 4 (a number); got {shown}")


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


def in_stripes(fn: nn.Module, x: torch.Tensor, stripe: int | None, halo: int) -> torch.Tensor:
    """``fn(x)`` for a purely local ``fn`` (3x3 convs, ReLU), computed in horizontal stripes of
    ``stripe`` rows, each with ``halo`` rows of context: the same result, with intermediates that
    are the size of a stripe instead of the image."""
    height = x.shape[2]
    if stripe is None or stripe >= height:
        return fn(x)
    out = None
    for y0 in range(0, height, stripe):
        y1 = min(y0 + stripe, height)
        top, bottom = max(y0 - halo, 0), min(y1 + halo, height)
        piece = fn(x[:, :, top:bottom])
        if out is None:
            shape = (x.shape[0], piece.shape[1], height, x.shape[3])
            out = torch.empty(shape, dtype=piece.dtype, device=piece.device, memory_format=_layout(piece))
        out[:, :, y0:y1] = piece[:, :, y0 - top : y1 - top]
    return out


def _layout(t: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        else torch.contiguous_format
    )


class ResBlock(nn.Module):
    """x + res_scale * attention(conv(relu(conv(x))))."""

    def __init__(self, *, n_feats: int, res_scale: float, bam: bool, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats))
        self.res_scale = res_scale
        self.attention = BalancedAttention(n_feats=n_feats, reduction=reduction) if bam else None

    def forward(self, x: torch.Tensor, stripe: int | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():  # training: super-image's own order of operations
            res = self.body(x)
            res = res if self.attention is None else self.attention(res)
            return res.mul(self.res_scale) + x
        # Inference: the same value with fewer passes over the features and no image-sized temporaries
        # beyond ``res``: res_scale is folded into the (B, C, 1, 1) channel gate, the gates are applied
        # in place, and the local convolutions may run in stripes (the attention's pooling is global,
        # so it always sees the whole image).
        res = in_stripes(self.body, x, stripe, halo=2)
        if self.attention is None:
            return res.mul_(self.res_scale).add_(x)
        channel = self.attention.ca(res).mul_(self.res_scale)  # (B, C, 1, 1)
        res.mul_(self.attention.sa(res))  # (B, C, H, W) * (B, 1, H, W)
        return torch.addcmul(x, res, channel, out=res)


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
        # Where the weights came from, as strings: a safetensors file's metadata (config, provenance), the
        # file of a super-image checkpoint, empty for fresh weights. Every loader fills it.
        self.metadata: dict[str, str] = {}
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

    def features(
        self, x: torch.Tensor, scale: int, *, stripe: int | None = None, progress: Callable[[], None] | None = None
    ) -> torch.Tensor:
        """LR-resolution features before upsampling: (B, 3, H, W) -> (B, C, H, W).

        ``stripe`` (rows, inference only) bounds the memory of the convolutions' intermediates;
        ``progress`` is called after the head, each residual block and the body's end.
        """
        self.check_scale(scale)
        step = progress or (lambda: None)
        x = self.head(x)
        step()
        for block in self.pre_process[str(scale)]:
            x = block(x, stripe)
            step()
        res = x
        for block in self.body[:-1]:
            res = block(res, stripe)
            step()
        res = in_stripes(self.body[-1], res, stripe, halo=1)
        step()
        return res + x if torch.is_grad_enabled() else res.add_(x)

    def reconstruct(self, features: torch.Tensor, scale: int) -> torch.Tensor:
        """Upsampler and tail, purely local (3x3 convs): (B, C, H, W) -> (B, 3, H*s, W*s)."""
        return self.tail(self.upsample[str(scale)](features))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.reconstruct(self.features(x, scale), scale)
