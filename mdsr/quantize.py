"""int8 inference for CPUs: the same network with 8-bit convolutions where they are safe; what
``precision="auto"`` runs on x86 CPUs with 8-bit dot products or AVX2 (``inference.auto_precision``).

What is quantised, and why it costs little PSNR (measured with the bundled weights: mean PSNR within
0.0029 dB of fp32 on each of Set5, Set14 and BSD100 at x2, x3 and x4, 0.0113 dB at most on one image,
with 8-bit weights; within 0.0082 dB and 0.0229 dB with 7-bit weights: ``docs/quality_bar.md``):
- The residual blocks' convolutions (pre-process and body: 68 of the 69 64-to-64 convolutions) take
  uint8 activations and int8 weights. Each block's output is multiplied by ``res_scale`` (0.1)
  before it joins the fp32 skip path, so their rounding error reaches the image damped tenfold.
  Between a block's two convolutions the ReLU output stays uint8, at a scale calibrated once on three
  photographs (``calibrate``); an image that exceeds it has that block recomputed, never clipped.
- The body's last convolution feeds the image directly, so it is "refined": a second int8 pass over
  the activations' rounding residual makes its input ~16-bit accurate.
- Head and attention stay fp32, and so does the HR stage (upsampler and tail), folded into one small
  convolution (``mdsr.folding``) that costs less in fp32 than the int8 stage it replaced.

Block inputs get one scale per tensor from the tensor's own min/max at run time (every image gets its
own range); weights get one symmetric scale per output channel. The convolutions run through
oneDNN's u8s8 kernels (the ones TorchInductor uses), which use VNNI/AMX where the CPU has them:
~4-5x the throughput of fp32 on an AVX-512 VNNI Xeon. Only CPUs are supported.

Weights are 8-bit where the kernels sum 8-bit products in 32 bits (VNNI, AMX), 7-bit elsewhere: oneDNN's
pre-VNNI kernels (AVX2, AVX-512 without VNNI) add each pair of uint8 x int8 products in 16 bits and
saturate past 32,767 (2 x 255 x 127 = 64,770; with 7-bit weights at most 2 x 255 x 63 = 32,130), which
moved outputs by ~5% in a probe on a Zen 3 EPYC. ``int8_weight_bits`` finds out which, by running one
convolution whose sums saturate in 16 bits, not by reading the CPU's name.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mdsr.folding import fold_in_place
from mdsr.model import MDSR, ResBlock


def int8_available(device: torch.device | str = "cpu") -> bool:
    """True where the int8 path runs: a CPU device and a PyTorch whose oneDNN quantised convolution
    works as this module calls it (probed once: the operators are internal to PyTorch)."""
    return torch.device(device).type == "cpu" and int8_weight_bits() is not None


@functools.cache
def int8_weight_bits() -> int | None:
    """The weights' width on this machine: 8 where oneDNN's int8 convolution sums a pair of full-range
    products exactly (VNNI, AMX), 7 where it does so only for 7-bit weights (pre-VNNI kernels), None where
    neither runs (a missing operator or a changed signature)."""
    for bits in (8, 7):
        try:
            if _sums_exactly(bits):
                return bits
        except (AttributeError, RuntimeError, TypeError):
            return None
    return None


def _sums_exactly(bits: int) -> bool:
    """A 3x3, 64-to-64 convolution with a bias, as the network's, whose every pair of products is
    2 x 255 x (2^(bits-1) - 1): inputs and weights of 1.0 give whole numbers up to 576 in fp32, where a pair
    summed in 16 bits saturates and gives about half. Run as the int8 path runs it: plain, refined (the
    second pass over the rounding residual) and with a uint8 output, so a changed operator shows here."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode():  # leaves the caller's RNG as it was
        conv = nn.Conv2d(64, 64, 3, padding=1)
        conv.weight.fill_(1.0)
        conv.bias = nn.Parameter(torch.full((64,), 0.5))
        x = torch.ones(1, 64, 8, 8).contiguous(memory_format=torch.channels_last)
        expected, ones = conv(x), QParams(1 / 255, 0)
        plain, refined = Int8Conv2d(conv, weight_bits=bits), Int8Conv2d(conv, refine=True, weight_bits=bits)
        q = _quantize(x, ones)
        as_uint8 = plain.run(_bytes(q), ones.scale, ones.zero_point, out_scale=4.0).float() * 4
        return all(
            torch.allclose(out, expected, rtol=1e-3, atol=2.0 if out is as_uint8 else 1e-3)
            for out in (plain(x, ones), refined(x), as_uint8)
        )


@dataclass(frozen=True)
class QParams:
    """One affine uint8 quantisation: value = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def for_range(cls, lo: float, hi: float) -> QParams:
        """The parameters that cover [min(lo, 0), max(hi, 0)] in 256 steps."""
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("int8 inference got non-finite activations")
        scale = (hi - lo) / 255 or 1.0
        return cls(scale, min(255, max(0, round(-lo / scale))))

    @classmethod
    def of(cls, x: torch.Tensor) -> QParams:
        """For a channels-last tensor's own range."""
        lo, hi = torch.aminmax(x.permute(0, 2, 3, 1))  # a dense view: one flat pass
        return cls.for_range(lo.item(), hi.item())


def _quantize(x: torch.Tensor, qparams: QParams | None = None) -> torch.Tensor:
    """fp32 (channels-last) -> quint8, with ``qparams`` or one affine scale from the tensor's own range
    (streamed inference passes the range of the whole map, of which ``x`` is a stripe)."""
    qparams = qparams or QParams.of(x)
    return _quantize_per_tensor(x, qparams.scale, qparams.zero_point)


def _quantize_per_tensor(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """torch.quantize_per_tensor, used only as a fast fp32 -> uint8 kernel (the quantised tensor never
    leaves this module); its deprecation notice is about the quantised tensor type, so it is silenced
    here, for this call alone (``import mdsr`` leaves the process's warning filters as they were)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)


def _bytes(q: torch.Tensor) -> torch.Tensor:
    """A quantised tensor's bytes, viewed (not copied) as the plain uint8 tensor oneDNN takes."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), 0, q.shape, q.stride())


class Int8Conv2d(nn.Module):
    """A frozen ``nn.Conv2d`` run with uint8 activations and int8 weights: fp32 in, fp32 out.

    ``relu`` fuses the ReLU that follows; ``refine`` adds the second pass over the rounding residual;
    ``weight_bits`` is 8, or 7 where the kernels sum pairs of products in 16 bits (default: this machine's,
    ``int8_weight_bits``).
    """

    def __init__(
        self, conv: nn.Conv2d, *, relu: bool = False, refine: bool = False, weight_bits: int | None = None
    ) -> None:
        super().__init__()
        if relu and refine:
            raise ValueError("a refined convolution cannot fuse its ReLU (relu(a + b) != relu(a) + b)")
        if conv.groups != 1 or conv.dilation != (1, 1):
            raise ValueError("only ungrouped, undilated convolutions are supported")
        weight_bits = (int8_weight_bits() or 8) if weight_bits is None else weight_bits
        if weight_bits not in (7, 8):
            raise ValueError(f"int8 weights are 7 or 8 bits wide; got {weight_bits}")
        top = 2 ** (weight_bits - 1) - 1  # symmetric: 127 or 63 steps each side
        weight = conv.weight.detach().float().cpu()
        self.weight_scale = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / top
        qweight = torch.round(weight / self.weight_scale[:, None, None, None]).clamp(-top, top).to(torch.int8)
        self.weight_zero_point = torch.zeros(weight.shape[0], dtype=torch.long)
        self.bias = None if conv.bias is None else conv.bias.detach().float().cpu()
        self.geometry = (list(conv.stride), list(conv.padding), [1, 1], 1)
        self.packed = torch.ops.onednn.qconv_prepack(qweight, self.weight_scale, 1.0, 0, *self.geometry, None)
        # What the integers stand for: streamed inference takes a channel mean of this convolution's output
        # from sums of its input by linearity (mdsr.streaming).
        self.dequantized_weight = qweight.float() * self.weight_scale[:, None, None, None]
        self.relu, self.refine = relu, refine

    def run(self, q: torch.Tensor, scale: float, zero_point: int, *, out_scale: float | None = None) -> torch.Tensor:
        """uint8 activations (with their scale and zero point) in; fp32 out, or uint8 at ``out_scale``."""
        return torch.ops.onednn.qconv2d_pointwise(
            q, scale, zero_point, self.packed, self.weight_scale, self.weight_zero_point, self.bias,
            *self.geometry, out_scale or 1.0, 0, None if out_scale else torch.float32,
            "relu" if self.relu else "none", [], "",
        )  # fmt: skip

    def forward(self, x: torch.Tensor, qparams: QParams | None = None) -> torch.Tensor:
        """fp32 in, fp32 out; ``x`` quantised with ``qparams``, or with its own range where None."""
        _inference_only()
        x = x.float().contiguous(memory_format=torch.channels_last)
        q = _quantize(x, qparams)
        out = self.run(_bytes(q), q.q_scale(), q.q_zero_point())
        if not self.refine:
            return out
        # The residual lies within half a step of the first quantisation; 254 steps cover it exactly.
        residual = q.dequantize().neg_().add_(x)  # x - dequantize(q), in a temporary
        r_scale = q.q_scale() / 254
        rq = _quantize_per_tensor(residual, r_scale, 128)
        return torch.ops.onednn.qconv2d_pointwise.binary(
            _bytes(rq), r_scale, 128, self.packed, self.weight_scale, self.weight_zero_point, out, None,
            *self.geometry, 1.0, 0, torch.float32, 1.0, 0, "sum", 1.0, "none", [], "",
        )  # fmt: skip


class Int8Branch(nn.Module):
    """A residual block's conv -> ReLU -> conv in int8, the ReLU's output kept in uint8 between them.

    That uint8 tensor needs its scale before the first convolution runs, so it comes from calibration
    (``relu_scale``). Where an image drives an activation past it, the block is recomputed with a scale
    of its own: calibration can cost speed, never accuracy. Uncalibrated, every scale is dynamic.
    """

    def __init__(self, first: nn.Conv2d, second: nn.Conv2d, *, weight_bits: int | None = None) -> None:
        super().__init__()
        self.first = Int8Conv2d(first, relu=True, weight_bits=weight_bits)
        self.second = Int8Conv2d(second, weight_bits=weight_bits)
        self.relu_scale: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _inference_only()
        if self.relu_scale is None:
            return self.second(self.first(x))
        quantized = self.quantized_input(x, QParams.of(x))
        hidden = self.hidden_at_relu_scale(quantized)
        if not saturated(hidden):
            return self.second.run(hidden, self.relu_scale, 0)
        return self.second(self.first.run(*quantized))  # fp32 out: the second conv takes its own range

    def quantized_input(self, x: torch.Tensor, qparams: QParams) -> tuple[torch.Tensor, float, int]:
        """(uint8 bytes, scale, zero point) of the block's input, as the first convolution takes it."""
        q = _quantize(x.float().contiguous(memory_format=torch.channels_last), qparams)
        return _bytes(q), q.q_scale(), q.q_zero_point()

    def hidden_at_relu_scale(self, quantized: tuple[torch.Tensor, float, int]) -> torch.Tensor:
        """The ReLU's output as uint8 at the calibrated ``relu_scale`` (255 where it saturates)."""
        return self.first.run(*quantized, out_scale=self.relu_scale)


def saturated(hidden: torch.Tensor) -> bool:
    """True where a uint8 ReLU output reached 255: its calibrated scale was exceeded somewhere."""
    return hidden.permute(0, 2, 3, 1).amax().item() >= 255


def _inference_only() -> None:
    if torch.is_grad_enabled():
        raise RuntimeError("int8 layers are for inference only (run under torch.inference_mode())")


def calibration_images() -> list[torch.Tensor]:
    """Three public-domain images bundled with scikit-image, as small LR inputs: SpaceX's rocket, NASA's
    Hubble deep field and an immunohistochemistry slide. None of them is in a set the quality bar is
    measured on (Set5, Set14, BSD100, the bundled example photos), so nothing is tuned on what is reported."""
    from skimage import data

    from mdsr.imaging import array_to_tensor, bicubic_downscale

    photos = (data.rocket(), data.hubble_deep_field(), data.immunohistochemistry())
    return [array_to_tensor(bicubic_downscale(photo, 8)) for photo in photos]


@torch.inference_mode()
def calibrate(model: MDSR, images: list[torch.Tensor], *, margin: float = 2.0) -> None:
    """Set each ``Int8Branch``'s ReLU scale to ``margin`` x the largest activation seen on ``images``
    (fp32 (1, 3, H, W) in [0, 1]), the images taking the model's scales in turn.

    A margin of 2 costs one bit of the ReLU outputs' 8 (their error is damped tenfold by res_scale)
    and makes re-computation rare (its count on the test sets is in ``benchmarks/quality_bar.py``'s report).
    """
    branches = [m for m in model.modules() if isinstance(m, Int8Branch)]
    peaks = dict.fromkeys(branches, 0.0)

    def record(branch: Int8Branch) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            peaks[branch] = max(peaks[branch], output.max().item())

        return hook

    for branch in branches:
        branch.relu_scale = None
    handles = [b.first.register_forward_hook(record(b)) for b in branches]
    try:
        for n, image in enumerate(images):
            scale = model.scales[n % len(model.scales)]
            model.infer_features(image.contiguous(memory_format=torch.channels_last), scale)
    finally:
        for h in handles:
            h.remove()
    for branch, peak in peaks.items():
        branch.relu_scale = peak * margin / 255 if peak > 0 else None


def int8_model(model: MDSR, *, calibration: list[torch.Tensor] | None = None, weight_bits: int | None = None) -> MDSR:
    """An inference-only copy of ``model`` with int8 convolutions (see the module docstring) and its HR stage
    folded (``folding.fold_in_place``), calibrated on ``calibration`` images (default:
    ``calibration_images()``), its weights ``weight_bits`` wide (default: ``int8_weight_bits()``, what this
    machine's kernels sum exactly). Takes ~0.4 s: convert once and keep the copy
    (``inference.PreparedModels``). Its state dict is not a checkpoint: keep and save the fp32 model.
    """
    if not int8_available(next(model.parameters()).device):
        raise ValueError("int8 inference needs the model on the CPU and a PyTorch with oneDNN's int8 convolutions")
    out = fold_in_place(copy.deepcopy(model).eval().requires_grad_(False))
    for block in [m for m in out.modules() if isinstance(m, ResBlock)]:
        block.body = Int8Branch(*block.convs(), weight_bits=weight_bits)
    end = out.body[-1]  # the body's last convolution, in its Sequential (``body.32.0``)
    assert isinstance(end, nn.Sequential) and isinstance(end[0], nn.Conv2d)
    end[0] = Int8Conv2d(end[0], refine=True, weight_bits=weight_bits)
    calibrate(out, calibration_images() if calibration is None else calibration)
    return out


def is_int8(model: MDSR) -> bool:
    return any(isinstance(m, Int8Conv2d) for m in model.modules())
