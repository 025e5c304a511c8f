"""Super-resolution of whole images: precision choice, exact tiling, self-ensemble, progress.

Balanced attention pools each feature map over the whole image, so the LR-resolution trunk (head,
pre-process, body) is always computed on the whole image, exactly; only the upsampler and tail,
which are purely local 3x3 convolutions at HR resolution, are tiled, with a halo wide enough that
every tile sees exactly the context it would see in one pass. On large images the trunk's
convolutions also run in row stripes (the attention still pools over everything), so memory is a
few LR feature maps plus one tile. The result equals whole-image inference up to floating-point
summation order.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import re
import time
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

import torch
from PIL import Image
from torch.nn import functional

from mdsr.folding import fold_upsamplers, hr_stage, is_folded
from mdsr.imaging import (
    ImageError,
    Picture,
    array_to_tensor,
    fill_hidden_colour,
    picture_from_pil,
    picture_to_pil,
    resize_picture,
    resize_plane,
    tensor_to_array,
)
from mdsr.limits import STRIPE_ABOVE_PIXELS, Trunk, trunk_mb
from mdsr.model import MDSR, shown
from mdsr.quantize import int8_available, int8_model, is_int8
from mdsr.sizing import SizePlan, Target, parse_size
from mdsr.sizing import plan as plan_size
from mdsr.streaming import LeanTrunk, StreamedTrunk

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "int8"]
Mode = Literal["fp32", "bf16", "int8"]
TrunkChoice = Literal["auto", "whole", "lean", "streamed"]
ProgressCallback = Callable[[int, int], None]
F = TypeVar("F", bound=Callable)

STRIPE_PIXELS = 96 * 1024  # a stripe's float map (~25 MB) stays under glibc's mmap threshold: no page faults

# Receptive radius of the HR stage in LR pixels: one 3x3 conv per upsampling step (at LR, then at
# 2x for x4) and the 3x3 tail at HR; 2 LR pixels cover every scale.
HALO = 2
# LR pixels of edge replication around the input. The network, zero-padded at every layer, darkens the
# image's outermost pixels (a flat 0.5 grey came out 0.25 to 0.39 in its corners with the shipped
# weights); with 4 replicated pixels the corners stay within 0.005 of the grey, and Set5 PSNR rises by
# 0.006 dB (border shaved) and 0.06 dB (unshaved), at x2, x3 and x4. Cost: (1 + 8/W)(1 + 8/H) of the trunk.
EDGE_PADDING = 4


@dataclass(frozen=True)
class CpuKind:
    """What precision choices need to know of a CPU: which low-precision dot products it runs natively."""

    int8: bool  # 8-bit dot products: AVX-512 VNNI, AVX-VNNI or AMX-INT8 (oneDNN's u8s8 kernels)
    bf16: bool  # bf16 dot products: AVX-512 BF16 or AMX-BF16 (elsewhere oneDNN emulates bf16, ~2x slower than fp32)
    avx2: bool = False  # AVX2: oneDNN's pre-VNNI int8 kernels (16-bit pair sums: 7-bit weights, mdsr.quantize)

    @classmethod
    def from_flags(cls, flags: str) -> CpuKind:
        """From the ``flags`` line of /proc/cpuinfo."""
        names = set(flags.split())
        return cls(
            int8=bool(names & {"avx512_vnni", "avx_vnni", "amx_int8"}),
            bf16=bool(names & {"avx512_bf16", "amx_bf16"}),
            avx2="avx2" in names,
        )


@functools.cache
def host_cpu() -> CpuKind:
    """This machine's CPU (read once); not Linux: no cheap way to tell, so nothing is assumed."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return CpuKind(int8=False, bf16=False)
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return CpuKind.from_flags(flags.group(1) if flags else "")


def bf16_supported(device: torch.device | str = "cpu", *, cpu: CpuKind | None = None) -> bool:
    """True where bf16 convolutions are native: CUDA with bf16, or a CPU with AVX-512 BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return (cpu or host_cpu()).bf16
    return False


def bf16_available(device: torch.device | str = "cpu") -> bool:
    """True where bf16 runs at all, natively or emulated (an explicit request may still want it)."""
    device = torch.device(device)
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return bf16_supported(device)


def auto_precision(device: torch.device | str = "cpu") -> Mode:
    """The fastest precision within the "no visible change" bar (docs/performance.md): against fp32, PSNR
    moves by at most 0.01 dB on average over each of Set5, Set14 and BSD100 at x2, x3 and x4, and by at
    most 0.1 dB on any one image of them or of the bundled photos (``benchmarks/quality_bar.py``).

    - CPUs with 8-bit dot products (AVX-512 VNNI, AVX-VNNI, AMX): int8 (``mdsr.quantize``), 2.3-2.5x
      fp32's speed on a Zen 5 EPYC; with the bundled weights its mean PSNR change is at most 0.0029 dB per set and
      scale, 0.0113 dB on the worst image.
    - Other x86 CPUs with AVX2: int8 with 7-bit weights (what their kernels sum exactly), 1.5-1.7x fp32's
      speed on a Zen 3 EPYC; mean PSNR change at most 0.0082 dB per set and scale, 0.0229 dB on the worst
      image (``docs/quality_bar.md``).
    - Other CPUs, and CUDA: fp32. bf16 misses the bar (mean +0.0105 dB on BSD100 x2, +0.123 dB on one BSD100
      image, measured with CPU autocast, whose arithmetic CUDA's bf16 shares: bf16 inputs, float32 sums),
      so it stays one choice away (``precision="bf16"``).
    """
    device = torch.device(device)
    cpu = host_cpu()
    if device.type != "cpu" or not (cpu.int8 or cpu.avx2):
        return "fp32"
    if not int8_available(device):
        _say_int8_missing()
        return "fp32"
    return "int8"


@functools.cache
def _say_int8_missing() -> None:
    """Once per process: a CPU made for int8 running fp32 (1.6-3x slower) is said, never silent."""
    logger.warning(
        "this CPU runs int8 convolutions, but PyTorch %s's oneDNN int8 convolution did not run here: "
        "precision 'auto' runs fp32, 1.6-3x slower", torch.__version__,
    )  # fmt: skip


def resolve_precision(precision: Precision | str, device: torch.device | str = "cpu") -> Mode:
    """The one place a precision is decided: "auto" is ``auto_precision``; an explicit choice (from any
    caller, so any string) is checked."""
    if precision == "auto":
        return auto_precision(device)
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if not bf16_available(device):
            raise ValueError(f"bf16 is not supported on this {torch.device(device).type} device; use fp32")
        return "bf16"
    if precision == "int8":
        if not int8_available(device):
            raise ValueError(
                f"int8 runs on the CPU with PyTorch's oneDNN int8 convolutions, not available on this "
                f"{torch.device(device).type} device or PyTorch {torch.__version__}; use fp32"
            )
        return "int8"
    raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'int8'; got {shown(precision)}")


class PreparedModels:
    """Models prepared to run at a precision, each made once per model and kept: an inference copy with its
    HR stage folded (``folding.fold_upsamplers``, the same function with ~10x less work there), for int8
    also quantised and calibrated (``quantize.int8_model``, ~0.4 s to make).

    Copies are keyed on the model object and on its weights' storage and version counters, so a model
    whose weights are changed in place (an optimiser step, ``load_state_dict``) gets a new copy; a model
    that is gone takes its copies with it. A server or a CLI run keeps one of these for its lifetime;
    ``upscale`` and ``upscale_picture`` take one (``prepared=``), or use ``DEFAULT_PREPARED``.
    """

    def __init__(self) -> None:
        self._copies: weakref.WeakKeyDictionary[MDSR, dict[str, tuple[tuple, MDSR]]] = weakref.WeakKeyDictionary()

    def get(self, model: MDSR, mode: Mode) -> MDSR:
        """``model`` ready to run at ``mode`` (already resolved: ``resolve_precision``)."""
        if is_int8(model):
            if mode != "int8":
                raise ValueError(f"this model was converted to int8; precision {mode!r} needs the fp32 model")
            return model
        if is_folded(model) and mode != "int8":
            return model
        kind = "int8" if mode == "int8" else "float"  # fp32 and bf16 share one copy (bf16 is autocast)
        stamp = tuple((p.data_ptr(), p._version) for p in model.parameters())
        copies = self._copies.setdefault(model, {})
        if kind not in copies or copies[kind][0] != stamp:
            copies[kind] = (stamp, int8_model(model) if kind == "int8" else fold_upsamplers(model))
        return copies[kind][1]


# What ``upscale`` and ``upscale_picture`` keep their int8 copies in when no ``prepared`` is given: a loop of
# calls on one model converts it once (its copies go when the model goes).
DEFAULT_PREPARED = PreparedModels()


def autocast(precision: Mode, device: torch.device | str = "cpu") -> AbstractContextManager:
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@dataclass(frozen=True)
class Stage:
    """One pass of the network as planned: its ``scale``, the ``input_size`` (width, height) it sees, the
    trunk it runs with, and the HR stage's ``tile`` (input pixels; None: one tile)."""

    scale: int
    input_size: tuple[int, int]
    trunk: Trunk
    tile: int | None

    @property
    def boxes(self) -> tuple[tuple[int, int, int, int], ...]:
        return tile_boxes(self.input_size[1], self.input_size[0], self.tile)

    @property
    def output_size(self) -> tuple[int, int]:
        return self.input_size[0] * self.scale, self.input_size[1] * self.scale


@dataclass(frozen=True)
class RunPlan:
    """Everything a run of the network needs, decided before it starts (``plan_run``): the stages, the
    exact output size (MATLAB's bicubic brings the last stage's output to it where they differ), the
    precision, self-ensemble and the device. ``execute`` carries it out and decides nothing."""

    stages: tuple[Stage, ...]
    size: tuple[int, int]
    precision: Mode
    self_ensemble: bool = False
    device: str = "cpu"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.stages[0].input_size

    @property
    def resized(self) -> bool:
        return self.size != self.stages[-1].output_size

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(stage.scale for stage in self.stages)

    def with_trunk(self, trunk: Trunk) -> RunPlan:
        """The same plan with every stage on ``trunk`` (off the CPU the whole-image trunk stays: the lean and
        streamed trunks are CPU code)."""
        if torch.device(self.device).type != "cpu":
            return self
        return replace(self, stages=tuple(replace(stage, trunk=trunk) for stage in self.stages))


def tile_boxes(height: int, width: int, tile: int | None) -> tuple[tuple[int, int, int, int], ...]:
    """(y0, y1, x0, x1) of each HR-stage tile of ``tile`` input pixels; one box where None or larger."""
    if tile is None or tile >= max(height, width):
        return ((0, height, 0, width),)
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    return tuple(
        (r * tile, min((r + 1) * tile, height), c * tile, min((c + 1) * tile, width))
        for r in range(rows)
        for c in range(cols)
    )


def choose_tile(height: int, width: int, scale: int, tile: int | Literal["auto"] | None) -> int | None:
    """The HR-stage tile in input pixels: "auto" keeps each tile's output within 256x256 pixels."""
    if tile == "auto":
        size = AUTO_TILE_HR // scale
        return None if max(height, width) <= size else size
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 16):
        raise ValueError(f"tile must be 'auto', None or a whole number of at least 16 LR pixels; got {shown(tile)}")
    return tile


def plan_run(
    input_size: tuple[int, int],
    sizing: SizePlan,
    *,
    precision: Mode,
    self_ensemble: bool = False,
    device: str = "cpu",
    tile: int | Literal["auto"] | None = "auto",
) -> RunPlan:
    """The stages of ``sizing`` for an input of ``input_size`` (width, height), each with its tiles, on the
    whole-image trunk; a leaner trunk is the caller's decision (``RunPlan.with_trunk``: ``choose_trunk``, or
    a server's memory budget)."""
    w, h = input_size
    if min(w, h) < 2:
        raise ImageError(f"the image is {w}x{h}; it must be at least 2 pixels on each side")
    stages = []
    for scale in sizing.stages:
        stages.append(Stage(scale, (w, h), "whole", choose_tile(h, w, scale, tile)))
        w, h = w * scale, h * scale
    return RunPlan(tuple(stages), sizing.size, precision, self_ensemble, str(device))


@torch.inference_mode()
def super_resolve(
    model: MDSR,
    lr: torch.Tensor,
    scale: int,
    *,
    precision: Mode = "fp32",
    tile: int | None = None,
    self_ensemble: bool = False,
    progress: ProgressCallback | None = None,
    edge_padding: int = EDGE_PADDING,
    trunk: Trunk = "whole",
) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (1, 3, H*s, W*s) float, clamped to [0, 1].

    ``model`` runs as it is: ``precision`` "int8" needs an int8 model (``PreparedModels`` or
    ``quantize.int8_model``), "bf16" runs the fp32 model under autocast. ``tile`` (LR pixels) bounds the
    HR stage's memory; None runs it whole. ``self_ensemble`` is EDSR's "+": the mean over the 8
    flips/rotations of the input, each undone. ``progress`` is called with (steps done, steps in all): a
    step is one block of the trunk or one HR tile. ``edge_padding`` LR pixels of the input's edge are
    replicated around it for the network and cropped from the result (see ``EDGE_PADDING``); 0 is the bare
    network, as super-image runs it. ``trunk``: "whole" keeps the trunk's three maps of the whole image
    (fastest); "lean" two (the long skip recomputed: ~1.1x the time); "streamed" one (``mdsr.streaming``:
    ~1.6x the time); all give the same features (CPU).
    """
    if (precision == "int8") != is_int8(model):
        raise ValueError(
            "precision 'int8' runs an int8 model (PreparedModels().get(model, 'int8'))"
            if precision == "int8"
            else f"this model was converted to int8; precision {precision!r} needs the fp32 model"
        )
    stage = Stage(scale, (lr.shape[3], lr.shape[2]), trunk, tile)
    return _run_stage(model, lr, stage, precision, self_ensemble, progress, edge_padding)


@torch.inference_mode()
def _run_stage(
    model: MDSR,
    lr: torch.Tensor,
    stage: Stage,
    mode: Mode,
    self_ensemble: bool,
    progress: ProgressCallback | None,
    edge_padding: int = EDGE_PADDING,
) -> torch.Tensor:
    lr = lr.to(next(model.parameters()).device)
    passes = 8 if self_ensemble else 1
    per_pass = trunk_steps(model, stage.scale) + len(stage.boxes)
    acc = None
    for k in range(passes):

        def report(n: int, k: int = k) -> None:
            if progress is not None:
                progress(k * per_pass + n, passes * per_pass)

        x = _dihedral(lr, k) if self_ensemble else lr
        boxes = tile_boxes(x.shape[2], x.shape[3], stage.tile)  # a rotation may swap the sides
        out = _single_pass(model, x, stage.scale, mode, boxes, report, edge_padding, stage.trunk)
        out = _undo_dihedral(out, k) if self_ensemble else out
        acc = out if acc is None else acc.add_(out)
    assert acc is not None  # passes >= 1
    return acc if passes == 1 else acc.div_(passes)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, Windows, musl): nothing to do
        return None


def release_freed_memory() -> None:
    """Hand the memory the allocator keeps from freed temporaries back to the system (glibc's malloc_trim):
    the streamed trunk's chunks live on the heap, and without this the process stays as large as their peak
    through everything that follows (the bicubic view, the scores)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def trunk_steps(model: MDSR, scale: int) -> int:
    """Progress steps of the trunk: the head, every residual block, and the body's end."""
    return 2 + len(model.pre_blocks(scale)) + len(model.body_blocks())


def _single_pass(
    model: MDSR,
    lr: torch.Tensor,
    scale: int,
    mode: Mode,
    boxes: tuple[tuple[int, int, int, int], ...],
    report: Callable[[int], None],
    pad: int,
    trunk: Trunk,
) -> torch.Tensor:
    device = lr.device
    _, _, h, w = lr.shape
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        report(done)

    with autocast(mode, device):
        if trunk in ("streamed", "lean") and device.type == "cpu":
            if trunk == "streamed":
                streamed = StreamedTrunk(model, lr, scale, pad=pad, progress=step)
            else:
                stripe = choose_stripe(h + 2 * pad, w + 2 * pad)
                streamed = LeanTrunk(model, lr, scale, pad=pad, progress=step, stripe=stripe)
            fmap = streamed.features()
            feats, release = fmap.tensor, fmap.release_above
            release_freed_memory()
        else:
            padded = functional.pad(lr, (pad, pad, pad, pad), mode="replicate") if pad else lr
            padded = padded.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout: ~20% faster
            stripe = None if device.type == "cuda" else choose_stripe(padded.shape[2], padded.shape[3])
            feats = model.infer_features(padded, scale, stripe=stripe, progress=step)
            del padded
            release = None
        _, _, fh, fw = feats.shape
        reconstruct = hr_stage(model, scale, pad)
        out = torch.empty((1, 3, h * scale, w * scale), dtype=torch.float32, device=device)
        for y0, y1, x0, x1 in boxes:
            # Pad the tile with its halo (from the padded features), run the local HR stage, keep only
            # the tile's own pixels.
            ty0, tx0 = y0 + pad, x0 + pad
            ty1, tx1 = y1 + pad, x1 + pad
            py0, py1, px0, px1 = max(ty0 - HALO, 0), min(ty1 + HALO, fh), max(tx0 - HALO, 0), min(tx1 + HALO, fw)
            hr = reconstruct(feats[:, :, py0:py1, px0:px1]).float()
            oy, ox = (ty0 - py0) * scale, (tx0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = hr[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
            if release is not None and x1 == w:  # a row of tiles done: later tiles read from their halo down
                release(y1 + pad - HALO)
            step()
    return out.clamp_(0, 1)


def choose_stripe(height: int, width: int) -> int | None:
    """Rows per stripe for the trunk's convolutions: none for small images (no halo overhead),
    ~128k pixels per stripe for large ones (intermediates of ~32 MB in fp32 at 64 channels)."""
    if height * width <= STRIPE_ABOVE_PIXELS:
        return None
    return max(32, STRIPE_PIXELS // width)


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    if k >= 4:
        x = x.transpose(2, 3)
    return torch.rot90(x, k % 4, dims=(2, 3))


def _undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, -(k % 4), dims=(2, 3))
    return x.transpose(2, 3) if k >= 4 else x


# --------------------------------------------------------------------------------------------------
# Hugging Face ZeroGPU: a GPU lent per call
# --------------------------------------------------------------------------------------------------


def zerogpu_active() -> bool:
    """True on a ZeroGPU Space: it sets SPACES_ZERO_GPU and provides the ``spaces`` package."""
    if "SPACES_ZERO_GPU" not in os.environ:
        return False
    try:
        import spaces  # noqa: F401 (only on Hugging Face Spaces)
    except ImportError:
        return False
    return True


def on_zerogpu(fn: F, *, duration: int = 120) -> F:
    """``fn`` decorated with ``spaces.GPU`` on a ZeroGPU Space (a GPU is attached for each call, for at
    most ``duration`` seconds); everywhere else ``fn`` itself, unchanged."""
    if not zerogpu_active():
        return fn
    import spaces

    return spaces.GPU(duration=duration)(fn)


def to_serving_device(model: MDSR) -> MDSR:
    """``model`` where a server keeps it: on ZeroGPU moved to CUDA in channels_last at start-up, as
    ZeroGPU asks (the GPU is attached only inside ``on_zerogpu`` calls); elsewhere unchanged, on the CPU."""
    if not zerogpu_active():
        return model
    return model.to("cuda", memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it


# --------------------------------------------------------------------------------------------------
# Whole pictures: PIL in, PIL out
# --------------------------------------------------------------------------------------------------

DEFAULT_MAX_OUTPUT_PIXELS = 64_000_000
# The whole-image trunk's memory the library allows itself before it streams: ~1.2 megapixels.
DEFAULT_TRUNK_BUDGET_MB = 1024
# "auto" tiles cover at most 256x256 output pixels (~17 MB of HR-stage features at 64 channels): faster
# than 512 (x4 of 256x256: 2.16 vs 2.27 s fp32, 0.91 vs 1.08 s int8, measured) as more stays in cache.
AUTO_TILE_HR = 256


@dataclass(frozen=True)
class RunInfo:
    """What ran, for the UI and the CLI: ``scale`` is the network's, or for another size the output's
    width over the input's (``stages`` then lists the network's scales, and ``resized`` says a bicubic step
    brought it to the exact size)."""

    scale: int | float
    precision: str
    device: str
    tiles: int
    self_ensemble: bool
    seconds: float
    trunk: Trunk = "whole"
    stages: tuple[int, ...] = ()
    resized: bool = False


def choose_trunk(
    size: tuple[int, int], trunk: TrunkChoice, budget_mb: float, device: torch.device | str = "cpu"
) -> Trunk:
    """ "whole" or "streamed" for an input of ``size`` (width, height): "auto" streams on the CPU where the
    whole-image trunk would need more than ``budget_mb`` (``limits.trunk_mb``)."""
    if trunk not in ("auto", "whole", "lean", "streamed"):
        raise ValueError(f"trunk must be 'auto', 'whole', 'lean' or 'streamed', got {trunk!r}")
    if trunk != "auto":
        return trunk
    if torch.device(device).type != "cpu":
        return "whole"
    return next((t for t in ("whole", "lean") if trunk_mb(size, t) <= budget_mb), "streamed")


def execute(
    models: Mapping[int, MDSR], pic: Picture, plan: RunPlan, progress: ProgressCallback | None = None
) -> tuple[Picture, RunInfo]:
    """Carry out ``plan`` on ``pic`` with ``models`` (one per scale, each prepared for ``plan.precision``):
    each stage's network, alpha upscaled with bicubic and re-attached, then MATLAB's bicubic to the exact
    size where the stages overshoot it. ``pic``'s colour under fully transparent pixels goes through the
    network as it is: its callers fill it first (``imaging.fill_hidden_colour``), once for the network and
    the bicubic baseline alike. ``progress`` counts every stage's steps."""
    if pic.size != plan.input_size:
        raise ImageError(
            f"the image decoded as {pic.size[0]}x{pic.size[1]}, not the {plan.input_size[0]}x{plan.input_size[1]} "
            "its header declared"
        )
    started, out = time.perf_counter(), pic
    steps = [trunk_steps(models[s.scale], s.scale) + len(s.boxes) for s in plan.stages]
    steps = [n * (8 if plan.self_ensemble else 1) for n in steps]
    for n, stage in enumerate(plan.stages):

        def report(done: int, _total: int, before: int = sum(steps[:n])) -> None:
            if progress is not None:
                progress(before + done, sum(steps))

        (w, h), s = stage.input_size, stage.scale
        lr = array_to_tensor(out.rgb, copy=stage.trunk == "whole")
        sr = _run_stage(models[s], lr, stage, plan.precision, plan.self_ensemble, report)
        alpha = None if out.alpha is None else resize_plane(out.alpha, s, (h * s, w * s))
        out = replace(out, rgb=tensor_to_array(sr), alpha=alpha)
        del lr, sr
        release_freed_memory()  # the trunk's maps go back to the system, not kept for the next allocation
    if plan.resized:
        out = resize_picture(out, plan.size)
    scale = math.prod(plan.scales) if not plan.resized else round(plan.size[0] / pic.size[0], 4)
    info = RunInfo(
        scale=scale, precision=plan.precision, device=plan.device, tiles=sum(len(s.boxes) for s in plan.stages),
        self_ensemble=plan.self_ensemble, seconds=time.perf_counter() - started, trunk=plan.stages[-1].trunk,
        stages=plan.scales, resized=plan.resized,
    )  # fmt: skip
    return out, info


def check_output_pixels(input_size: tuple[int, int], sizing: SizePlan, limit: int) -> None:
    """Refuse a plan whose output, or the network's larger output before a resize, passes ``limit`` pixels."""
    (w, h), (ow, oh) = input_size, sizing.size
    largest = max(ow * oh, w * h * sizing.scale * sizing.scale)
    if largest > limit:
        made = f" (the network makes {w * sizing.scale}x{h * sizing.scale} first)" if sizing.resized((w, h)) else ""
        raise ImageError(
            f"a {w}x{h} image upscaled to {ow}x{oh}{made} would be {largest:,} pixels; the output limit is {limit:,} pixels"
        )


def upscale_picture(
    model: MDSR,
    pic: Picture,
    scale: int | float | None = None,
    *,
    size: Target | str | None = None,
    precision: Precision = "auto",
    self_ensemble: bool = False,
    progress: ProgressCallback | None = None,
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
    trunk: TrunkChoice = "auto",
    trunk_budget_mb: float = DEFAULT_TRUNK_BUDGET_MB,
    tile: int | Literal["auto"] | None = "auto",
    prepared: PreparedModels = DEFAULT_PREPARED,
) -> tuple[Picture, RunInfo]:
    """Super-resolve a decoded picture (``imaging.Picture``) by ``scale`` (2, 3 or 4: the network alone;
    another factor from 1.1 to 8) or to ``size`` (a ``sizing.Target``, or "1920x1080" to fit inside,
    "1920x", "x1080"). Everything is decided here, once: the size plan, the precision ("auto":
    ``auto_precision``), the trunk ("auto" keeps the whole-image trunk where it needs at most
    ``trunk_budget_mb``, else the lean or streamed one: the same result in less memory) and the tiles; then
    ``execute`` runs it. ``prepared`` keeps the int8 copy of ``model``, made at its first int8 call."""
    target: Target | int | float
    if size is None and scale is None:
        raise ValueError("give a scale (a factor from 1.1 to 8) or a size such as 1920x1080")
    if size is not None and scale is not None:
        raise ValueError(f"give a scale or a size, not both; got scale {shown(scale)} and size {shown(size)}")
    if not isinstance(model, MDSR):
        raise TypeError(f"model must be an mdsr.MDSR (mdsr.load_model() gives one); got {type(model).__name__}")
    if not isinstance(self_ensemble, bool):  # "yes" or 0 would pass as truthy or falsy, silently
        raise TypeError(f"self_ensemble must be True or False; got {shown(self_ensemble)}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function called as progress(done, total); got {shown(progress)}")
    if size is not None:
        target = size if isinstance(size, Target) else parse_size(size)
    else:
        assert scale is not None  # refused above
        target = scale
    sizing = plan_size(pic.size, target)
    if max_output_pixels is not None:
        check_output_pixels(pic.size, sizing, max_output_pixels)
    device = next(model.parameters()).device
    mode = resolve_precision(precision, device)
    run = plan_run(pic.size, sizing, precision=mode, self_ensemble=self_ensemble, device=str(device), tile=tile)
    run = run.with_trunk(choose_trunk(run.stages[-1].input_size, trunk, trunk_budget_mb, device))  # the largest
    ready = prepared.get(model, mode)
    # The colour under fully transparent pixels (often black) would bleed into the edges: filled first.
    return execute(dict.fromkeys(sizing.stages, ready), fill_hidden_colour(pic), run, progress)


def upscale(
    model: MDSR,
    image: Image.Image,
    scale: int | float | None = None,
    *,
    size: Target | str | None = None,
    precision: Precision = "auto",
    self_ensemble: bool = False,
    progress: ProgressCallback | None = None,
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
    trunk: TrunkChoice = "auto",
    trunk_budget_mb: float = DEFAULT_TRUNK_BUDGET_MB,
    tile: int | Literal["auto"] | None = "auto",
    prepared: PreparedModels = DEFAULT_PREPARED,
) -> Image.Image:
    """Super-resolve a PIL image of any mode: ``upscale_picture``'s arguments, a PIL image back of the same
    kind (grey stays grey, alpha is kept, 16-bit grey stays 16-bit; see ``imaging.picture_to_pil``; the
    colour under fully transparent pixels does not reach the edges: see ``execute``) with the
    input's colour profile and EXIF in its ``info``."""
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"upscale takes a PIL image (PIL.Image.open(path)); got {type(image).__name__}. For a file, "
            "mdsr.read_image(path) and upscale_picture keep 16-bit colour too"
        )
    out, _ = upscale_picture(
        model, picture_from_pil(image, max_pixels=None), scale, size=size, precision=precision,
        self_ensemble=self_ensemble, progress=progress, max_output_pixels=max_output_pixels, trunk=trunk,
        trunk_budget_mb=trunk_budget_mb, tile=tile, prepared=prepared,
    )  # fmt: skip
    result = picture_to_pil(out)
    result.info.update({k: v for k, v in (("icc_profile", out.icc), ("exif", out.exif)) if v})
    return result
