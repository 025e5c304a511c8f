"""Opt-in int8 inference for CPUs: the same network with 8-bit convolutions where they are safe.

What is quantised, and why it costs almost no PSNR:
- The residual blocks' convolutions (pre-process and body, 68 of the 72 large convolutions) take
  uint8 activations and int8 weights. Each block's output is multiplied by ``res_scale`` (0.1)
  before it joins the fp32 skip path, so their rounding error reaches the image damped tenfold.
- The body's last convolution and the upsampler feed the image directly, so they are "refined":
  a second int8 pass over the activations' rounding residual makes them ~16-bit accurate
  (per-tensor 8-bit activations there alone cost 0.02 dB on Set5 x2).
- Head and tail (3 channels in or out, ~1% of the work) and the attention stay fp32.

Activations get one scale per tensor from the tensor's own min/max at run time (no calibration set,
and every image gets its own range); weights get one symmetric scale per output channel. The
convolutions run through oneDNN's u8s8 kernels (the ones TorchInductor uses), which use VNNI/AMX
where the CPU has them: ~5x the throughput of fp32 on an AVX-512 VNNI Xeon. Only CPUs are supported.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from mdsr.model import MDSR, ResBlock

# torch.quantize_per_tensor is used only as a fast fp32 -> uint8 kernel (the quantised tensor never
# leaves this module); its deprecation notice is about the quantised tensor type, not the kernel.
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)


def int8_available(device: torch.device | str = "cpu") -> bool:
    """True where the int8 path runs: a CPU device and a PyTorch whose oneDNN quantised convolution
    works as this module calls it (probed once: the operators are internal to PyTorch)."""
    return torch.device(device).type == "cpu" and _int8_probe()


@functools.cache
def _int8_probe() -> bool:
    try:
        conv = nn.Conv2d(4, 4, 3, padding=1)
        with torch.inference_mode():
            x = torch.rand(1, 4, 8, 8)
            expected = conv(x)
            return bool((Int8Conv2d(conv, refine=True)(x) - expected).norm() < 0.05 * expected.norm())
    except (AttributeError, RuntimeError, TypeError):  # a missing operator or a changed signature
        return False


@functools.cache
def cpu_has_int8_dot_product() -> bool:
    """AVX-512 VNNI, AVX-VNNI or AMX: the instructions that make int8 convolutions fast."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", cpuinfo) is not None


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """fp32 (channels-last) -> quint8 with one affine scale from the tensor's own range."""
    lo, hi = torch.aminmax(x.permute(0, 2, 3, 1))  # a dense view: one flat pass
    lo, hi = min(lo.item(), 0.0), max(hi.item(), 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("int8 inference got non-finite activations")
    scale = (hi - lo) / 255 or 1.0
    zero_point = min(255, max(0, round(-lo / scale)))
    return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)


def _bytes(q: torch.Tensor) -> torch.Tensor:
    """A quantised tensor's bytes, viewed (not copied) as the plain uint8 tensor oneDNN takes."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), 0, q.shape, q.stride())


class Int8Conv2d(nn.Module):
    """A frozen ``nn.Conv2d`` run with uint8 activations and int8 weights: fp32 in, fp32 out.

    ``relu`` fuses the ReLU that follows; ``refine`` adds the second pass over the rounding residual.
    """

    def __init__(self, conv: nn.Conv2d, *, relu: bool = False, refine: bool = False) -> None:
        super().__init__()
        if relu and refine:
            raise ValueError("a refined convolution cannot fuse its ReLU (relu(a + b) != relu(a) + b)")
        if conv.groups != 1 or conv.dilation != (1, 1):
            raise ValueError("only ungrouped, undilated convolutions are supported")
        weight = conv.weight.detach().float().cpu()
        self.weight_scale = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127
        qweight = torch.round(weight / self.weight_scale[:, None, None, None]).clamp(-127, 127).to(torch.int8)
        self.weight_zero_point = torch.zeros(weight.shape[0], dtype=torch.long)
        self.bias = None if conv.bias is None else conv.bias.detach().float().cpu()
        self.geometry = (list(conv.stride), list(conv.padding), [1, 1], 1)
        self.packed = torch.ops.onednn.qconv_prepack(qweight, self.weight_scale, 1.0, 0, *self.geometry, None)
        self.relu, self.refine = relu, refine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("int8 layers are for inference only (run under torch.inference_mode())")
        x = x.float().contiguous(memory_format=torch.channels_last)
        q = _quantize(x)
        scale, zero_point = q.q_scale(), q.q_zero_point()
        out = torch.ops.onednn.qconv2d_pointwise(
            _bytes(q), scale, zero_point, self.packed, self.weight_scale, self.weight_zero_point, self.bias,
            *self.geometry, 1.0, 0, torch.float32, "relu" if self.relu else "none", [], "",
        )  # fmt: skip
        if not self.refine:
            return out
        # The residual lies within half a step of the first quantisation; 254 steps cover it exactly.
        residual = q.dequantize().neg_().add_(x)  # x - dequantize(q), in a temporary
        r_scale = scale / 254
        rq = torch.quantize_per_tensor(residual, r_scale, 128, torch.quint8)
        return torch.ops.onednn.qconv2d_pointwise.binary(
            _bytes(rq), r_scale, 128, self.packed, self.weight_scale, self.weight_zero_point, out, None,
            *self.geometry, 1.0, 0, torch.float32, 1.0, 0, "sum", 1.0, "none", [], "",
        )  # fmt: skip


def int8_model(model: MDSR) -> MDSR:
    """An inference-only copy of ``model`` with int8 convolutions (see the module docstring).

    The copy's state dict is not a checkpoint: keep and save the fp32 model.
    """
    if not int8_available(next(model.parameters()).device):
        raise ValueError("int8 inference needs the model on the CPU and a PyTorch with oneDNN's int8 convolutions")
    out = copy.deepcopy(model).eval().requires_grad_(False)
    blocks = [m for m in out.modules() if isinstance(m, ResBlock)]
    for block in blocks:
        first, _relu, second = block.body
        block.body = nn.Sequential(Int8Conv2d(first[0], relu=True), Int8Conv2d(second[0]))
    out.body[-1][0] = Int8Conv2d(out.body[-1][0], refine=True)
    for upsampler in out.upsample.values():
        for step in upsampler:
            if isinstance(step, nn.Sequential):
                step[0] = Int8Conv2d(step[0], refine=True)
    return out


def is_int8(model: MDSR) -> bool:
    return any(isinstance(m, Int8Conv2d) for m in model.modules())
