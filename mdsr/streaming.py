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

from mdsr.attention import ChannelAttention
from mdsr.model import MDSR, ResBlock
from mdsr.quantize import Int8Branch, Int8Conv2d, QParams, _quantize, saturated

BLOCK_HALO = 5  # rows of context a residual block's output needs: two 3x3 convolutions and the 7x7 gate
# Work is done in bands of rows (a copy of the band, with its context, is kept while the band is replaced)
# and, within a band, in chunks of columns. A chunk's float map stays under glibc's mmap threshold (32 MB),
# so its memory is reused from one chunk to the next instead of being faulted in afresh each time.
BAND_BYTES = 32 * 2**20
CHUNK_PIXELS = 96 * 1024


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


def dense(t: torch.Tensor) -> torch.Tensor:
    """A chunk of a map as a dense channels-last tensor (``clone`` copies a strided chunk ~5x faster than
    ``contiguous`` here)."""
    return t if t.is_contiguous(memory_format=torch.channels_last) else t.clone(memory_format=torch.channels_last)


def spans(length: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, length, step):
        yield start, min(start + step, length)


def band_rows(width: int, channels: int) -> int:
    """At least 64 rows, so that a band's 10 rows of context cost at most a sixth more work."""
    return min(256, max(64, BAND_BYTES // (width * channels * 4)))


def chunk_columns(rows: int) -> int:
    return max(2 * BLOCK_HALO, CHUNK_PIXELS // (rows + 2 * BLOCK_HALO) - 2 * BLOCK_HALO)


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
        self.quantized = block.body if isinstance(block.body, Int8Branch) else None
        self.int8 = self.quantized is not None
        self.conv2_bias: torch.Tensor | None
        if self.quantized is not None:
            self.conv2_weight = self.quantized.second.dequantized_weight
            self.conv2_bias = self.quantized.second.bias
            self.input_q = QParams.for_range(input_range.lo, input_range.hi)  # as the whole map quantises
        else:
            self.conv1, self.conv2 = block.convs()
            self.conv2_weight, self.conv2_bias = self.conv2.weight.detach(), self.conv2.bias
        self.relu_scale = None if self.quantized is None else self.quantized.relu_scale
        self.calibrated = self.relu_scale is not None
        self.hidden_q: QParams | None = None

    @property
    def needs_hidden_range(self) -> bool:
        return self.int8 and not self.calibrated and self.hidden_q is None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        body = self.quantized
        if body is None:
            return torch.relu_(self.conv1(x))
        quantized = body.quantized_input(x, self.input_q)
        if self.calibrated:
            return body.hidden_at_relu_scale(quantized)
        h = body.first.run(*quantized)  # fp32, the ReLU fused
        return h if self.hidden_q is None else _quantize(h, self.hidden_q).int_repr()

    def hidden_scale(self) -> float:
        if self.quantized is None:
            return 1.0
        if self.calibrated and self.relu_scale is not None:
            return self.relu_scale
        if self.hidden_q is None:
            raise RuntimeError("an uncalibrated int8 block's hidden range is taken before its scale is asked")
        return self.hidden_q.scale

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        """conv2(h), fp32."""
        if self.quantized is None:
            return self.conv2(h)
        h = h.contiguous(memory_format=torch.channels_last)
        return self.quantized.second.run(h, self.hidden_scale(), 0)


class BorderSums:
    """Per-channel sums of a map (B=1) over everything, its first and last row and column, and its
    corners, gathered block by block in float64: what a 3x3 zero-padded convolution's mean needs."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        # (C,) float64 once a block is added
        self.total: torch.Tensor | float = 0.0
        self.top: torch.Tensor | float = 0.0
        self.bottom: torch.Tensor | float = 0.0
        self.left: torch.Tensor | float = 0.0
        self.right: torch.Tensor | float = 0.0
        self.corners: dict[str, torch.Tensor] = {}

    def add(self, h: torch.Tensor, y0: int, x0: int) -> None:
        """``h``: the block of the map whose top-left pixel is (``x0``, ``y0``), (1, C, rows, columns)."""
        h = h[0].float()  # uint8 too: PyTorch sums uint8 ~10x slower than a float copy of it
        # float32 (pairwise) within a block, float64 across blocks

        def total(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
            return values.sum(dim=dims).double()

        last_row, last_col = y0 + h.shape[1] == self.height, x0 + h.shape[2] == self.width
        self.total = self.total + total(h, (1, 2))
        if y0 == 0:
            self.top = self.top + total(h[:, 0], (1,))
        if last_row:
            self.bottom = self.bottom + total(h[:, -1], (1,))
        if x0 == 0:
            self.left = self.left + total(h[:, :, 0], (1,))
        if last_col:
            self.right = self.right + total(h[:, :, -1], (1,))
        for name, is_there, pixel in (
            ("tl", y0 == 0 and x0 == 0, (0, 0)),
            ("tr", y0 == 0 and last_col, (0, -1)),
            ("bl", last_row and x0 == 0, (-1, 0)),
            ("br", last_row and last_col, (-1, -1)),
        ):
            if is_there:
                self.corners[name] = h[:, pixel[0], pixel[1]].double()

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
    if block.attention is None or state.gate is None:  # the gate is None exactly where there is no attention
        return r.mul_(block.res_scale).add_(x)
    return block.attention.infer_into(r, x, state.gate)


class StreamedTrunk:
    """``MDSR.features`` of a padded image, computed in the memory of one feature map (module docstring).

    ``lr`` is the unpadded input (1, 3, h, w), which may be a view of the caller's array: only pieces of
    it are read. ``pad`` pixels of its edge are replicated around it, as ``super_resolve`` does.
    """

    def __init__(
        self, model: MDSR, lr: torch.Tensor, scale: int, *, pad: int, progress: Callable[[], None] | None = None
    ) -> None:
        model.check_scale(scale)
        self.model, self.lr, self.scale, self.pad = model, lr, scale, pad
        _, _, h, w = lr.shape
        self.height, self.width = h + 2 * pad, w + 2 * pad
        channels = model.config.n_feats
        self.rows = band_rows(self.width, channels)
        self.columns = chunk_columns(self.rows)
        self.progress = progress or (lambda: None)

    def padded_input(self, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """A block of the edge-replicated input, (1, 3, rows, cols), channels-last."""
        h, w = self.lr.shape[2:]
        y = (torch.arange(*rows) - self.pad).clamp_(0, h - 1)
        x = (torch.arange(*cols) - self.pad).clamp_(0, w - 1)
        return self.lr.index_select(2, y).index_select(3, x).float().contiguous(memory_format=torch.channels_last)

    def features(self) -> FeatureMap:
        """The head and pre-process blocks (their gates recorded), the body's blocks (``body``), and the
        body's end with the long skip recomputed, all in one map that is returned."""
        model = self.model
        fmap = FeatureMap(model.config.n_feats, self.height, self.width)
        x = fmap.tensor
        written = self.fill(x, 1, lambda _piece, rows, cols: model.head(self.padded_input(rows, cols)), reads=False)
        self.progress()
        skip_blocks = []
        for block in model.pre_blocks(self.scale):
            state, written = self.update_block(block, x, written)
            skip_blocks.append(state)
            self.progress()
        written = self.body(x, written)
        self.finish(x, written, skip_blocks)
        self.progress()
        return fmap

    def body(self, x: torch.Tensor, written: Range) -> Range:
        """The body's residual blocks, each streamed in place; returns the range of the result."""
        for block in self.model.body_blocks():
            _, written = self.update_block(block, x, written)
            self.progress()
        return written

    # -- sweeps: every band of rows, every chunk of columns, in place ---------------------------------

    def fill(
        self,
        x: torch.Tensor,
        halo: int,
        fn: Callable[[torch.Tensor, tuple[int, int], tuple[int, int]], torch.Tensor],
        *,
        reads: bool = True,
    ) -> Range:
        """Replace ``x``, band by band and chunk by chunk, by ``fn(piece, rows, cols)``: ``piece`` is ``x``
        as it was before this sweep over ``rows`` x ``cols`` (the chunk with ``halo`` pixels of context on
        each side, cut at the image's edges), or an empty view where ``fn`` ``reads`` nothing of it. A band's output
        is written once the band below has read its context from it. Returns the range of what was written."""
        written = Range()
        pending: list[tuple[int, int, int, int, torch.Tensor]] = []

        def write(outputs: list[tuple[int, int, int, int, torch.Tensor]]) -> None:
            for y0, y1, x0, x1, out in outputs:
                x[:, :, y0:y1, x0:x1] = out
                written.add(out)

        for y0, y1 in spans(self.height, self.rows):
            a, b = max(y0 - halo, 0), min(y1 + halo, self.height)
            done = []
            for x0, x1 in spans(self.width, self.columns):
                c0, c1 = max(x0 - halo, 0), min(x1 + halo, self.width)
                piece = dense(x[:, :, a:b, c0:c1]) if reads else x[:, :, :0]
                done.append((y0, y1, x0, x1, fn(piece, (a, b), (c0, c1))[:, :, y0 - a : y1 - a, x0 - c0 : x1 - c0]))
            write(pending)
            pending = done
        write(pending)
        return written

    # -- one block: statistics, then update in place ------------------------------------------------

    def update_block(self, block: ResBlock, x: torch.Tensor, x_range: Range) -> tuple[BlockState, Range]:
        branch = Branch(block, x_range)
        gate = None if block.attention is None else self.channel_gate(branch, block.attention.ca, x)
        state = BlockState(branch, gate)
        return state, self.fill(x, BLOCK_HALO, lambda piece, _rows, _cols: apply_block(state, piece))

    def channel_gate(self, branch: Branch, ca: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
        """ca(conv2(h)) * res_scale, with conv2's mean taken from sums of h over the whole image."""
        sums = None if branch.needs_hidden_range else self.hidden_sums(branch, x)
        if sums is None:  # uncalibrated, or the calibrated ReLU scale was exceeded: the map's own range
            branch.calibrated = False
            peak = Range()
            for _y0, _x0, h in self.hidden_blocks(branch, x):
                peak.add(h)
            branch.hidden_q = QParams.for_range(0.0, peak.hi)
            sums = self.hidden_sums(branch, x)
            assert sums is not None  # uncalibrated now: nothing is refused as saturated
        mean = sums.conv_mean(branch.conv2_weight, branch.conv2_bias, branch.hidden_scale())
        return ca.forward_pooled(mean).mul_(branch.block.res_scale)

    def hidden_sums(self, branch: Branch, x: torch.Tensor) -> BorderSums | None:
        sums = BorderSums(self.height, self.width)
        for y0, x0, h in self.hidden_blocks(branch, x):
            if branch.calibrated and saturated(h):
                return None
            sums.add(h, y0, x0)
        return sums

    def hidden_blocks(self, branch: Branch, x: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """relu(conv1(x)) block by block: (top, left, block), read-only over ``x``."""
        for y0, y1 in spans(self.height, self.rows):
            a, b = max(y0 - 1, 0), min(y1 + 1, self.height)
            for x0, x1 in spans(self.width, self.columns):
                c0, c1 = max(x0 - 1, 0), min(x1 + 1, self.width)
                piece = dense(x[:, :, a:b, c0:c1])
                yield y0, x0, branch.hidden(piece)[:, :, y0 - a : y1 - a, x0 - c0 : x1 - c0]

    # -- the body's last convolution plus the recomputed long skip -----------------------------------

    def finish(self, x: torch.Tensor, x_range: Range, skip_blocks: list[BlockState]) -> None:
        last = self.model.body[-1].get_submodule("0")  # the body's last convolution, fp32 or int8
        input_q = QParams.for_range(x_range.lo, x_range.hi) if isinstance(last, Int8Conv2d) else None
        skip_halo = 1 + BLOCK_HALO * len(skip_blocks)

        def body_end(piece: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
            out = last(piece) if input_q is None else last(piece, input_q)
            return out.add_(self.skip(rows, cols, skip_halo, skip_blocks))

        self.fill(x, 1, body_end)

    def skip(self, rows: tuple[int, int], cols: tuple[int, int], halo: int, blocks: list[BlockState]) -> torch.Tensor:
        """The pre-process output over ``rows`` x ``cols``, recomputed from the input with the recorded gates."""
        (a, b), (c0, c1) = rows, cols
        ra, rb = max(a - halo, 0), min(b + halo, self.height)
        ca, cb = max(c0 - halo, 0), min(c1 + halo, self.width)
        s = self.model.head(self.padded_input((ra, rb), (ca, cb)))
        for state in blocks:
            s = apply_block(state, s)
        return s[:, :, a - ra : b - ra, c0 - ca : c1 - ca]


class LeanTrunk(StreamedTrunk):
    """``MDSR.features`` in the memory of two maps, at about 1.1x the whole-image trunk's time: as
    ``StreamedTrunk`` (the head and pre-process blocks streamed, their gates recorded; the body's end
    streamed, the long skip recomputed), but the body's blocks run on whole maps, each reading one and
    writing the other, their convolutions in stripes of ``stripe`` rows. For images whose three whole-image
    maps would not fit, but two do."""

    def __init__(
        self,
        model: MDSR,
        lr: torch.Tensor,
        scale: int,
        *,
        pad: int,
        stripe: int | None,
        progress: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(model, lr, scale, pad=pad, progress=progress)
        self.stripe = stripe

    def body(self, x: torch.Tensor, written: Range) -> Range:
        current, spare = x, torch.empty_like(x, memory_format=torch.channels_last)
        for block in self.model.body_blocks():
            current, spare = block.infer(current, self.stripe, out=spare), current
            self.progress()
        if current is not x:
            x.copy_(current)
        del current, spare
        written = Range()
        written.add(x)
        return written
