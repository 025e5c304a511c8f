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

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

from mdsr import kernels
from mdsr.attention import BalancedAttention

SUPPORTED_SCALES = (2, 3, 4)
# The MDSR/EDSR family's sizes: MDSR's deepest body has 80 blocks, EDSR's widest 256 channels. A config
# beyond them is no model of this family, only a way to make a loader allocate gigabytes.
MAX_RESBLOCKS = 80
MAX_FEATS = 256


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: for messages about values from untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)  # True is an int to Python, not to a config


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
        # Configs come from files anyone can upload: each field is checked for its type and range, so
        # that a wrong one is a sentence here instead of an exception (or gigabytes) in the constructor.
        for name, top in (("n_resblocks", MAX_RESBLOCKS), ("n_feats", MAX_FEATS)):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= top:
                raise ValueError(f"{name} must be a whole number from 1 to {top}; got {shown(value)}")
            object.__setattr__(self, name, int(value))
        if not _is_int(self.reduction) or self.reduction < 1 or self.n_feats % self.reduction:
            raise ValueError(
                f"reduction must be a whole number that divides n_feats ({self.n_feats}); got {shown(self.reduction)}"
            )
        object.__setattr__(self, "reduction", int(self.reduction))
        res_scale = self.res_scale
        # NaN fails the range test (every comparison with it is false), infinity fails its upper end.
        if not isinstance(res_scale, Real) or isinstance(res_scale, bool) or not 0 < res_scale <= 1:
            raise ValueError(f"res_scale must be a number above 0 and at most 1; got {shown(res_scale)}")
        object.__setattr__(self, "res_scale", float(res_scale))
        if not isinstance(self.bam, bool):
            raise ValueError(f"bam must be true or false; got {shown(self.bam)}")
        scales = self.scales
        if (
            not isinstance(scales, (list, tuple))
            or not scales
            or any(not _is_int(s) or s not in SUPPORTED_SCALES for s in scales)
        ):
            raise ValueError(f"scales must be a non-empty subset of {SUPPORTED_SCALES}, got {shown(scales)}")
        object.__setattr__(self, "scales", tuple(sorted(set(int(s) for s in scales))))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MdsrConfig:
        """A config from its fields (a JSON object); other keys are ignored, wrong values are a ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an MDSR config must be an object of named fields; got {type(data).__name__}")
        fields: dict[str, Any] = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)  # each field's type and range is checked in __post_init__


def parameter_count(config: MdsrConfig) -> int:
    """The number of weights of ``MDSR(config)``, by arithmetic: a loader knows a config's size before it
    allocates anything."""
    f = config.n_feats

    def conv(c_in: int, c_out: int) -> int:
        return 9 * c_in * c_out + c_out

    hidden = f // config.reduction
    attention = 2 * f * hidden + hidden + 49 if config.bam else 0  # fc1, fc2, PReLU, 7x7 spatial conv
    block = 2 * conv(f, f) + attention
    upsample = {2: conv(f, 4 * f), 3: conv(f, 9 * f), 4: 2 * conv(f, 4 * f)}
    blocks = config.n_resblocks + 2 * len(config.scales)  # the body, and two pre-process blocks per scale
    return conv(3, f) + blocks * block + conv(f, f) + sum(upsample[s] for s in config.scales) + conv(f, 3)


def conv3x3(c_in: int, c_out: int) -> nn.Sequential:
    # Wrapped in Sequentials only so the parameter names match super-image ("body.32.0.weight").
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1))


def in_stripes(
    fn: nn.Module, x: torch.Tensor, stripe: int | None, halo: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``fn(x)`` for a purely local ``fn`` (3x3 convs, ReLU), computed in horizontal stripes of
    ``stripe`` rows, each with ``halo`` rows of context: the same result, with intermediates that
    are the size of a stripe instead of the image. Striped results go into ``out`` where given (a buffer
    used again and again costs no page faults; a fresh image-sized one does, every time)."""
    height = x.shape[2]
    if stripe is None or stripe >= height:
        return fn(x)
    for y0 in range(0, height, stripe):
        y1 = min(y0 + stripe, height)
        top, bottom = max(y0 - halo, 0), min(y1 + halo, height)
        piece = fn(x[:, :, top:bottom])
        if out is None:
            shape = (x.shape[0], piece.shape[1], height, x.shape[3])
            out = torch.empty(shape, dtype=piece.dtype, device=piece.device, memory_format=_layout(piece))
        out[:, :, y0:y1] = piece[:, :, y0 - top : y1 - top]
    assert out is not None  # the loop ran: stripe < height
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
        # conv -> ReLU -> conv; int8 inference swaps in one module for all three (``quantize.Int8Branch``).
        self.body: nn.Module = nn.Sequential(
            conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats)
        )
        self.res_scale = res_scale
        self.attention = BalancedAttention(n_feats=n_feats, reduction=reduction) if bam else None

    def convs(self) -> tuple[nn.Conv2d, nn.Conv2d]:
        """The body's two convolutions (``body.0.0``, ``body.2.0``), while it is the fp32 one."""
        first, second = (self.body.get_submodule(name) for name in ("0.0", "2.0"))
        if not (isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d)):
            raise TypeError("this block's body is not the fp32 conv -> ReLU -> conv")
        return first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: super-image's own order of operations."""
        res = self.body(x)
        res = res if self.attention is None else self.attention(res)
        return res.mul(self.res_scale) + x

    def infer(self, x: torch.Tensor, stripe: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Inference (no autograd: it works in place): ``forward``'s value with fewer passes over the features
        and no image-sized temporaries beyond ``res``. res_scale is folded into the (B, C, 1, 1) channel gate,
        the gates are applied in place, ``out`` (a map no longer needed) is where ``res`` is written, and the
        local convolutions may run in ``stripe``s of rows (the attention's pooling is global, so it always
        sees the whole image)."""
        res = in_stripes(self.body, x, stripe, halo=2, out=out)
        if self.attention is None:
            return res.mul_(self.res_scale).add_(x)
        peak = None
        if kernels.fits(res, x) and kernels.available():  # both statistics in one pass (mdsr.kernels)
            mean, peak = kernels.channel_mean_and_peak(res)
        else:
            mean = res.mean(dim=(2, 3), keepdim=True)
        channel = self.attention.ca.forward_pooled(mean).mul_(self.res_scale)  # (B, C, 1, 1)
        return self.attention.infer_into(res, x, channel, peak)


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

        def block() -> ResBlock:
            return ResBlock(
                n_feats=config.n_feats, res_scale=config.res_scale, bam=config.bam, reduction=config.reduction
            )

        self.head = nn.Sequential(conv3x3(3, config.n_feats))
        self.pre_process = nn.ModuleDict({str(s): nn.Sequential(block(), block()) for s in config.scales})
        self.body = nn.Sequential(
            *[block() for _ in range(config.n_resblocks)], conv3x3(config.n_feats, config.n_feats)
        )
        self.upsample = nn.ModuleDict({str(s): Upsampler(scale=s, n_feats=config.n_feats) for s in config.scales})
        self.tail: nn.Module = nn.Sequential(conv3x3(config.n_feats, 3))  # inference folds it away (mdsr.folding)

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    def check_scale(self, scale: int) -> None:
        if scale not in self.config.scales:
            raise ValueError(f"this model upscales by {', '.join(map(str, self.scales))}; got scale {scale}")

    def pre_blocks(self, scale: int) -> list[ResBlock]:
        """The residual blocks of ``scale``'s pre-process, in order."""
        return [m for m in self.pre_process[str(scale)].children() if isinstance(m, ResBlock)]

    def body_blocks(self) -> list[ResBlock]:
        """The body's residual blocks, in order; the convolution after them is ``body[-1]``."""
        return [m for m in self.body.children() if isinstance(m, ResBlock)]

    def features(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """LR-resolution features before upsampling, for training: (B, 3, H, W) -> (B, C, H, W)."""
        self.check_scale(scale)
        x = self.head(x)
        x = self.pre_process[str(scale)](x)
        return self.body(x) + x

    def infer_features(
        self, x: torch.Tensor, scale: int, *, stripe: int | None = None, progress: Callable[[], None] | None = None
    ) -> torch.Tensor:
        """``features`` for inference (under ``torch.inference_mode``): each block's in-place path
        (``ResBlock.infer``), each writing into a map the previous block no longer needs. ``stripe`` (rows)
        bounds the memory of the convolutions' intermediates; ``progress`` is called after the head, each
        residual block and the body's end."""
        self.check_scale(scale)
        step = progress or (lambda: None)
        x = self.head(x)
        step()
        spare = None  # a map no longer needed, where the next block writes (no fresh pages)
        for block in self.pre_blocks(scale):
            x, spare = block.infer(x, stripe, out=spare), x
            step()
        res = x
        for block in self.body_blocks():
            res, spare = block.infer(res, stripe, out=spare), None if res is x else res
            step()
        res = in_stripes(self.body[-1], res, stripe, halo=1, out=spare)
        step()
        return res.add_(x)

    def reconstruct(self, features: torch.Tensor, scale: int) -> torch.Tensor:
        """Upsampler and tail, purely local (3x3 convs): (B, C, H, W) -> (B, 3, H*s, W*s)."""
        return self.tail(self.upsample[str(scale)](features))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.reconstruct(self.features(x, scale), scale)
