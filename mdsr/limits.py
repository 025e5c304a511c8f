"""What a request costs, from image sizes alone, before any work: network work and peak memory.

Work is output pixels times network passes (self-ensemble runs the network 8 times, an A/B comparison
runs two networks). Memory is the peak resident memory of the process, estimated in two phases: while
the network runs (its trunk, whole-image or streamed, and the output it fills) and after it (the
output, the bicubic view, the ground truth's scores), on top of what stays alive throughout (the
process at rest, the decoded input and truth, and in an A/B comparison A's results while B runs).
The constants are fitted to peaks measured in fresh processes (``benchmarks/bench_memory.py`` for the
trunk, ``tests/test_limits.py`` for whole requests, which also checks each kind stays under its
estimate), rounded up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Trunk = Literal["whole", "lean", "streamed"]  # the network's trunk, fastest first (``mdsr.streaming``)

EDGE = 8  # the input's edge replicated by 4 pixels on each side (mdsr.inference.EDGE_PADDING)
# The process itself is measured where a request is admitted (``resident_mb``): what follows is what a
# request adds to it.
# The trunk, per pixel of the edge-padded input: the whole-image trunk holds three 64-channel float maps
# and its striped pieces; the lean trunk two; the streamed trunk one, plus its bands and chunks.
WHOLE_TRUNK_BYTES = 1040  # measured: ~995 above rest in int8 at 533x533, a request's whole peak (tests/test_limits.py)
# Up to STRIPE_ABOVE_PIXELS the whole-image trunk's convolutions run unstriped (no halo overhead, fastest):
# each one's intermediates are whole maps too (measured: 405 MB at 486x486, 343 MB at 518x518).
STRIPE_ABOVE_PIXELS = 512 * 512
UNSTRIPED_TRUNK_BYTES = 1400
LEAN_TRUNK_BYTES = 560  # two maps: the block's input and output
STREAMED_TRUNK_BYTES = 260
# The streamed trunk's bands and chunks (the lean trunk's streamed parts too). Peaks vary from run to run
# with the allocator: a 12 MP photo's largest region at x2 peaked 851-890 MB over identical runs (fp32, Zen 3).
STREAMED_FIXED_MB = 270
INPUT_BYTES = 24  # per input pixel: the decoded picture and the network's view of it
# Per pixel of a file while it is decoded: the decoder's 8-bit images and the float picture (measured: 29).
DECODE_BYTES = 30
# Per output pixel:
OUTPUT_BYTES = 12  # the output picture (float32 RGB)
WRITE_BYTES = 4  # its 8-bit copy while it is written
TRUTH_BYTES = 14  # the ground truth, decoded, kept throughout
VIEW_BYTES = 24  # the demo's views: the bicubic picture and the 8-bit previews (slider, zoom, error maps)
RUN_MB = 80  # any run: oneDNN's scratch buffers and primitives, the encoder's buffers (measured: 60-70 MB)
SCORES_MB = 150  # PSNR/SSIM on Y and the error maps, computed in bands of rows (mdsr.metrics.BAND_PIXELS)


def trunk_mb(size: tuple[int, int], trunk: Trunk) -> float:
    """The trunk's peak memory (MB, beyond everything else) for an input of ``size`` (width, height)."""
    pixels = (size[0] + EDGE) * (size[1] + EDGE)
    if trunk == "whole":
        return (UNSTRIPED_TRUNK_BYTES if pixels <= STRIPE_ABOVE_PIXELS else WHOLE_TRUNK_BYTES) * pixels / 1e6
    per_pixel = LEAN_TRUNK_BYTES if trunk == "lean" else STREAMED_TRUNK_BYTES
    return per_pixel * pixels / 1e6 + STREAMED_FIXED_MB


def request_memory_mb(
    size: tuple[int, int],
    scale: int,
    *,
    trunk: Trunk,
    views: bool = False,
    truth: bool = False,
    models: int = 1,
) -> float:
    """Estimated peak (MB) that one image's request adds to the process: the demo's ``views``
    made (bicubic, previews), a ``truth`` scored against, and ``models`` networks compared (A/B: 2, the first
    one's output kept while the second runs). The streamed trunk hands its map back row by row as the output
    is filled, so its output does not add to the trunk's peak; the whole-image trunk's does."""
    inputs, outputs = size[0] * size[1], size[0] * size[1] * scale * scale
    held = INPUT_BYTES * inputs + (TRUTH_BYTES * outputs if truth else 0) + (models - 1) * OUTPUT_BYTES * outputs
    running = trunk_mb(size, trunk) * 1e6 + (OUTPUT_BYTES * outputs if trunk == "whole" else 0)
    after = (OUTPUT_BYTES + WRITE_BYTES + (VIEW_BYTES if views else 0)) * outputs + (SCORES_MB * 1e6 if truth else 0)
    return RUN_MB + (held + max(running, after)) / 1e6


def work_pixels(size: tuple[int, int], scale: int, *, self_ensemble: bool = False, models: int = 1) -> int:
    """Output pixels times network passes."""
    return size[0] * size[1] * scale * scale * (8 if self_ensemble else 1) * models


def describe_passes(self_ensemble: bool, models: int) -> str:
    """Why a request runs the network more than once, for messages: "" for one pass."""
    passes = (8 if self_ensemble else 1) * models
    if passes == 1:
        return ""
    ensemble = "self-ensemble" + (": 8 each" if models > 1 else "")
    why = ", ".join(([f"{models} models (A/B)"] if models > 1 else []) + ([ensemble] if self_ensemble else []))
    return f" x {passes} passes ({why})"


def resident_mb() -> float:
    """This process's resident memory now (MB): what every estimate stands on, measured, not assumed
    (0 where /proc is not there: then only the estimate counts)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS")), 0.0)
