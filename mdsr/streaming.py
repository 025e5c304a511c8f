"""Exact whole-image features in bounded memory: the trunk streamed over the image in row stripes.

The whole-image trunk (``MDSR.features``) keeps three 64-channel maps of the image at once, ~850 bytes
per input pixel. Here only one is kept, the residual stream X, updated in place block by block.

A residual block is ``x + res_scale * ca(r) * sa(r) * r`` with ``r = conv2(relu(conv1(x)))``. Everything
in it is local (3x3 and 7x7 convolutions) except the channel gate ``ca``, which needs the mean of ``r``
over the whole image. So each block takes two sweeps over the image, one stripe of rows at a time:

1. statistics: ``h = relu(conv1(x))`` per stripe; the channel mean of ``r = conv2(h)`` follows from sums
   of ``h`` by linearity (its total, and its border rows, columns and corners, which conv2's zero padding
   leaves out of some taps), so conv2 is not run in this sweep;
2. update: per stripe, with 5 rows of context on each side (2 for the convolutions, 3 for the 7x7 spatial
   gate), the block's output replaces the stripe's rows of X; the 5 rows above, already replaced, are
   kept from before in a small carry.

The long skip (the head and pre-process blocks' output) is not kept either: the last sweep recomputes
it stripe by stripe, with the pre-process blocks' gates recorded on the way. An int8 model quantises
each block's input with the range of the whole map, tracked while the map is written, just as the
whole-image int8 path quantises the whole tensor, so both compute the same integers. The results equal
whole-image inference up to the order of floating-point sums (tested). Memory: one float map of the
padded image (256 bytes per pixel at 64 channels) and a few stripes; the HR stage hands the map's rows
back to the system as it passes them (``FeatureMap.release_above``).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from mdsr.model import MDSR, ResBlock
from mdsr.quantize import Int8Branch, Int8Conv2d, QParams, _quantize, saturated

BLOCK_HALO = 5  # rows of context a residual block's output needs: two 3x3 convolutions and the 7x7 gate
STREAM_STRIPE_PIXELS = 256 * 1024  # pixels per stripe (a few ~50 MB temporaries at 64 channels)


class FeatureMap:
    """A (1, C, H, W) channels-last float32 map in anonymous memory, whose rows above a given one can be
    handed back to the system once nothing will read them again (Linux; elsewhere kept until freed)."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.row_bytes = width * channels * 4
        self._buffer = mmap.mmap(-1, max(height * self.row_bytes, 1))
        array = np.frombuffer(self._buffer, dtype=np.float32, count=height * width * channels)
        self.tensor = torch.from_numpy(array.reshape(1, height, width, channels)).permute(0, 3, 1, 2)
        self._released = 0

    def release_above(self, row: int) -> None:
        """Give back the memory of rows [0, row): reading them afterwards gives zeros."""
        end = row * self.row_bytes // mmap.PAGESIZE * mmap.PAGESIZE
        if end > self._released and hasattr(self._buffer, "madvise"):
            self._buffer.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
            self._released = end


def stripes(height: int, rows: int) -> Iterator[tuple[int, int]]:
    for y0 in range(0, height, rows):
        yield y0, min(y0 + rows, height)


def stripe_rows(width: int, *, minimum: int = 2 * BLOCK_HALO) -> int:
    return max(minimum, STREAM_STRIPE_PIXELS // max(width, 1))


# --------------------------------------------------------------------------------------------------
# A residual block's branch, fp32 or int8, taken apart for streaming
# --------------------------------------------------------------------------------------------------


class Range:
    """The running min and max of what has been written to a map."""

    def __init__(self) -> None:
        self.lo, self.hi = float("inf"), float("-inf")

    def add(self, t: torch.Tensor) -> None:
        lo, hi = torch.aminmax(t.permute(0, 2, 3, 1))
        self.lo, self.hi = min(self.lo, lo.item()), max(self.hi, hi.item())


class Branch:
    """conv1 -> ReLU -> conv2 of one block, fp32 or int8. ``hidden`` gives the ReLU's output in the form
    ``residual`` takes: fp32, or uint8 worth ``hidden_scale()`` a step, at the calibrated ReLU scale or,
    where that was exceeded (or never calibrated), at the range of the whole hidden map (``hidden_q``)."""

    def __init__(self, block: ResBlock, input_range: Range) -> None:
        self.block = block
        self.int8 = isinstance(block.body, Int8Branch)
        if self.int8:
            self.conv2_weight = block.body.second.dequantized_weight
            self.conv2_bias = block.body.second.bias
            self.input_q = QParams.for_range(input_range.lo, input_range.hi)  # as the whole map quantises
        else:
            conv2 = block.body[2][0]
            self.conv2_weight, self.conv2_bias = conv2.weight.detach(), conv2.bias
        self.calibrated = self.int8 and block.body.relu_scale is not None
        self.hidden_q: QParams | None = None

    @property
    def needs_hidden_range(self) -> bool:
        return self.int8 and not self.calibrated and self.hidden_q is None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        if not self.int8:
            conv1, relu = self.block.body[0], self.block.body[1]
            return relu(conv1(x))
        body: Int8Branch = self.block.body
        quantized = body.quantized_input(x, self.input_q)
        if self.calibrated:
            return body.hidden_at_relu_scale(quantized)
        h = body.first.run(*quantized)  # fp32, the ReLU fused
        return h if self.hidden_q is None else _quantize(h, self.hidden_q).int_repr()

    def hidden_scale(self) -> float:
        if not self.int8:
            return 1.0
        return self.block.body.relu_scale if self.calibrated else self.hidden_q.scale

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        """conv2(h), fp32."""
        if not self.int8:
            return self.block.body[2](h)
        h = h.contiguous(memory_format=torch.channels_last)
        return self.block.body.second.run(h, self.hidden_scale(), 0)


class BorderSums:
    """Per-channel sums of a map (B=1) over everything, its first and last row and column, and its
    corners, gathered stripe by stripe in float64: what a 3x3 zero-padded convolution's mean needs."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.total = self.top = self.bottom = self.left = self.right = 0.0
        self.corners: dict[str, torch.Tensor] = {}

    def add(self, h: torch.Tensor, y0: int) -> None:
        """``h``: rows [y0, y0 + rows) of the map, (1, C, rows, W)."""
        h = h[0].double()
        self.total = self.total + h.sum(dim=(1, 2))
        self.left = self.left + h[:, :, 0].sum(dim=1)
        self.right = self.right + h[:, :, -1].sum(dim=1)
        if y0 == 0:
            self.top = h[:, 0].sum(dim=1)
            self.corners["tl"], self.corners["tr"] = h[:, 0, 0], h[:, 0, -1]
        if y0 + h.shape[1] == self.height:
            self.bottom = h[:, -1].sum(dim=1)
            self.corners["bl"], self.corners["br"] = h[:, -1, 0], h[:, -1, -1]

    def conv_mean(self, weight: torch.Tensor, bias: torch.Tensor | None, step: float) -> torch.Tensor:
        """Mean over the image of conv3x3(h * step) (padding 1), per output channel, as (1, C, 1, 1)."""
        rows = {0: self.bottom, 1: 0.0, 2: self.top}  # tap row 0 never reads the last row, tap row 2 the first
        cols = {0: self.right, 1: 0.0, 2: self.left}
        corner = {(0, 0): "br", (0, 2): "bl", (2, 0): "tr", (2, 2): "tl"}
        w = weight.double()
        mean = torch.zeros(w.shape[0], dtype=torch.float64)
        for i in range(3):
            for j in range(3):
                seen = self.total - rows[i] - cols[j]
                if (i, j) in corner:
                    seen = seen + self.corners[corner[(i, j)]]
                mean += w[:, :, i, j] @ seen
        mean = mean * step / (self.height * self.width)
        if bias is not None:
            mean += bias.double()
        return mean.float().view(1, -1, 1, 1)


# --------------------------------------------------------------------------------------------------
# The trunk, streamed
# --------------------------------------------------------------------------------------------------


@dataclass
class BlockState:
    """What a block needs to be recomputed locally later: its branch (with its quantisation) and gate."""

    branch: Branch
    gate: torch.Tensor | None  # (1, C, 1, 1): channel attention times res_scale; None without attention


def apply_block(state: BlockState, x: torch.Tensor) -> torch.Tensor:
    """The block's output for the rows of ``x`` (valid where ``x`` holds BLOCK_HALO rows of context or
    reaches the image's edge), with its gate known."""
    branch, block = state.branch, state.branch.block
    r = branch.residual(branch.hidden(x))
    if block.attention is None:
        return r.mul_(block.res_scale).add_(x)
    r.mul_(block.attention.sa(r))
    return torch.addcmul(x, r, state.gate, out=r)


class StreamedTrunk:
    """``MDSR.features`` of a padded image, computed in the memory of one feature map (module docstring).

    ``lr`` is the unpadded input (1, 3, h, w), which may be a view of the caller's array: only rows of it
    are read. ``pad`` rows and columns of its edge are replicated around it, as ``super_resolve`` does.
    """

    def __init__(
        self, model: MDSR, lr: torch.Tensor, scale: int, *, pad: int, progress: Callable[[], None] | None = None
    ) -> None:
        model.check_scale(scale)
        self.model, self.lr, self.scale, self.pad = model, lr, scale, pad
        _, _, h, w = lr.shape
        self.height, self.width = h + 2 * pad, w + 2 * pad
        self.rows = stripe_rows(self.width)
        self.progress = progress or (lambda: None)

    def padded_rows(self, a: int, b: int) -> torch.Tensor:
        """Rows [a, b) of the edge-replicated input, (1, 3, b - a, W), channels-last."""
        h = self.lr.shape[2]
        index = (torch.arange(a, b) - self.pad).clamp_(0, h - 1)
        rows = self.lr.index_select(2, index).float()
        if self.pad:
            rows = functional.pad(rows, (self.pad, self.pad, 0, 0), mode="replicate")
        return rows.contiguous(memory_format=torch.channels_last)

    def features(self) -> FeatureMap:
        model = self.model
        channels = model.config.n_feats
        fmap = FeatureMap(channels, self.height, self.width)
        x, written = fmap.tensor, Range()
        for y0, y1 in stripes(self.height, self.rows):
            a, b = max(y0 - 1, 0), min(y1 + 1, self.height)
            out = model.head(self.padded_rows(a, b))[:, :, y0 - a : y1 - a]
            x[:, :, y0:y1] = out
            written.add(out)
        self.progress()
        skip_blocks = []
        for block in model.pre_process[str(self.scale)]:
            state, written = self.update_block(block, x, written)
            skip_blocks.append(state)
            self.progress()
        for block in model.body[:-1]:
            _, written = self.update_block(block, x, written)
            self.progress()
        self.finish(x, written, skip_blocks)
        self.progress()
        return fmap

    # -- one block: statistics, then update in place ------------------------------------------------

    def update_block(self, block: ResBlock, x: torch.Tensor, x_range: Range) -> tuple[BlockState, Range]:
        branch = Branch(block, x_range)
        gate = None if block.attention is None else self.channel_gate(branch, x)
        state = BlockState(branch, gate)
        written = Range()
        self.sweep(x, BLOCK_HALO, lambda rows: apply_block(state, rows), written)
        return state, written

    def channel_gate(self, branch: Branch, x: torch.Tensor) -> torch.Tensor:
        """ca(conv2(h)) * res_scale, with conv2's mean taken from sums of h over the whole image."""
        sums = None if branch.needs_hidden_range else self.hidden_sums(branch, x)
        if sums is None:  # uncalibrated, or the calibrated ReLU scale was exceeded: the map's own range
            branch.calibrated = False
            peak = Range()
            for _y0, _y1, h in self.hidden_stripes(branch, x):
                peak.add(h)
            branch.hidden_q = QParams.for_range(0.0, peak.hi)
            sums = self.hidden_sums(branch, x)
        mean = sums.conv_mean(branch.conv2_weight, branch.conv2_bias, branch.hidden_scale())
        return branch.block.attention.ca.forward_pooled(mean).mul_(branch.block.res_scale)

    def hidden_sums(self, branch: Branch, x: torch.Tensor) -> BorderSums | None:
        sums = BorderSums(self.height, self.width)
        for y0, _y1, h in self.hidden_stripes(branch, x):
            if branch.calibrated and saturated(h):
                return None
            sums.add(h, y0)
        return sums

    def hidden_stripes(self, branch: Branch, x: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        for y0, y1 in stripes(self.height, self.rows):
            a, b = max(y0 - 1, 0), min(y1 + 1, self.height)
            yield y0, y1, branch.hidden(x[:, :, a:b])[:, :, y0 - a : y1 - a]

    def sweep(
        self, x: torch.Tensor, halo: int, fn: Callable[[torch.Tensor], torch.Tensor], written: Range
    ) -> None:
        """Replace every stripe of ``x`` by ``fn`` of it (given ``halo`` rows of context on each side, as
        they were before this sweep), in place; the rows above a stripe come from a carry."""
        carry = x[:, :, :0].clone()
        for y0, y1 in stripes(self.height, self.rows):
            b = min(y1 + halo, self.height)
            rows = torch.cat([carry, x[:, :, y0:b]], dim=2).contiguous(memory_format=torch.channels_last)
            a = y0 - carry.shape[2]
            out = fn(rows)[:, :, y0 - a : y1 - a]
            carry = x[:, :, max(y1 - halo, 0) : y1].clone()
            x[:, :, y0:y1] = out
            written.add(out)

    # -- the body's last convolution plus the recomputed long skip -----------------------------------

    def finish(self, x: torch.Tensor, x_range: Range, skip_blocks: list[BlockState]) -> None:
        last = self.model.body[-1][0]
        input_q = QParams.for_range(x_range.lo, x_range.hi) if isinstance(last, Int8Conv2d) else None
        skip_halo = 1 + BLOCK_HALO * len(skip_blocks)

        carry = x[:, :, :0].clone()
        for y0, y1 in stripes(self.height, self.rows):
            b = min(y1 + 1, self.height)
            rows = torch.cat([carry, x[:, :, y0:b]], dim=2).contiguous(memory_format=torch.channels_last)
            a = y0 - carry.shape[2]
            out = (last(rows) if input_q is None else last(rows, input_q))[:, :, y0 - a : y1 - a]
            out.add_(self.skip_rows(y0, y1, skip_halo, skip_blocks))
            carry = x[:, :, max(y1 - 1, 0) : y1].clone()
            x[:, :, y0:y1] = out

    def skip_rows(self, y0: int, y1: int, halo: int, blocks: list[BlockState]) -> torch.Tensor:
        """Rows [y0, y1) of the pre-process output, recomputed from the input with the recorded gates."""
        a, b = max(y0 - halo, 0), min(y1 + halo, self.height)
        s = self.model.head(self.padded_rows(a, b))
        for state in blocks:
            s = apply_block(state, s)
        return s[:, :, y0 - a : y1 - a]


def streamed_memory_bytes(height: int, width: int, channels: int = 64) -> int:
    """The streamed trunk's own memory for a padded (height, width): the map and a few stripes of it."""
    rows = stripe_rows(width) + 2 * BLOCK_HALO
    return channels * 4 * (height * width + 5 * rows * width)
