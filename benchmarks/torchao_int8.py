"""torchao's PT2E int8 for x86, as a benchmark contender: the fastest int8 path on a maintained runtime.

The bare network for one scale is captured with ``torch.export`` (height and width dynamic), annotated
by torchao's ``X86InductorQuantizer`` with its default config (static, per-tensor uint8 activations from
histogram observers, per-channel int8 weights, every convolution: head, tail and the attention's included,
which this package's own int8 keeps in fp32), calibrated on the same three public-domain photos as
``mdsr.quantize`` (``calibration_images()``, edge-padded as the network sees them), converted, and then
compiled by Inductor with freezing, where torchao's passes fuse each quantize/dequantize/conv pattern into
oneDNN's ``qconv2d_pointwise`` (with its ReLU or add where it can). Whole image, no tiling, no clamp:
the runner is the network, as ``openvino_runner`` in ``bench_inference.py`` is.

``activations="minmax"`` is the same flow with the activations' range from a MinMaxObserver instead of the
default's HistogramObserver: the same kernels, and on the 64 x 64 astronaut at x2 its output is 44.9 dB from
fp32's where the default's is 39.4 dB (this package's int8: 60.8 dB). Each runner compiles once for inputs
up to about 82 x 82 pixels and once for larger ones (see the comment at ``use_duck_shape``); a compile of
the whole network takes 0.5-2 minutes on a 2-core machine.

Needs torchao (0.18 with torch 2.14) in the benchmark environment (``.bench``, see ``bench_inference.py``).
Smoke test: ``.bench/bin/python benchmarks/torchao_int8.py [--size 64] [--scale 2] [--activations minmax]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.fx.experimental._config
from torch.nn import functional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdsr.inference import EDGE_PADDING  # noqa: E402
from mdsr.model import MDSR  # noqa: E402

FUSED_COUNTER = "qconv_weight_prepack_matcher_count"  # torchao's pass counts each conv it lowers to oneDNN


class _OneScale(torch.nn.Module):
    """``model`` at one scale, one input: ``mdsr.export.OneScale`` without its ``enable_grad`` (which
    ``torch.export`` would keep as a higher-order op around the whole graph, hiding the convolutions from
    the quantizer's patterns)."""

    def __init__(self, model: MDSR, scale: int) -> None:
        super().__init__()
        model.check_scale(scale)
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.scale)


def _layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


ACTIVATIONS = ("histogram", "minmax")


def quantization_config(activations: str = "histogram"):
    """torchao's default x86 config (``activations="histogram"``: static, HistogramObserver, whose range
    minimises the rounding + clipping error on the calibration images), or the same with the activations'
    range from a MinMaxObserver ("minmax": static, nothing seen in calibration is clipped). (torchao's
    dynamic-activation config, ``is_dynamic=True``, is not offered: Inductor fuses none of its convolutions.)"""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        get_default_x86_inductor_quantization_config,
    )

    if activations not in ACTIVATIONS:
        raise ValueError(f"activations: one of {', '.join(ACTIVATIONS)}; got {activations!r}")
    config = get_default_x86_inductor_quantization_config()
    if activations == "minmax":
        act = config.input_activation
        act = dataclasses.replace(act, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return config


def torchao_int8_forward(
    model: MDSR, scale: int, example: torch.Tensor, *, activations: str = "histogram", verbose: bool = True
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network for ``scale`` quantised by torchao's PT2E flow and compiled by Inductor with freezing: a
    function from a float (1, 3, H, W) input (any height and width; pad it as for the network itself) to
    its (1, 3, H*s, W*s) output, unclamped, run under ``torch.inference_mode``. ``example`` is run once
    here, so the compile is paid now (another shape may compile again: dynamic shapes are asked for).
    Prints the times of export + calibration + convert, and of the compile, where ``verbose``.
    Raises ImportError where torchao is not installed."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Importing this module registers torchao's Inductor fusion passes (qconv weight prepack, post-ops).
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    from mdsr.quantize import calibration_images

    start = time.perf_counter()
    net = _OneScale(model.eval(), scale)
    height, width = torch.export.Dim("height", min=8), torch.export.Dim("width", min=8)
    with torch.no_grad():
        exported = torch.export.export(net, (_layout(example.float()),), dynamic_shapes={"x": {2: height, 3: width}})
        quantizer = X86InductorQuantizer().set_global(quantization_config(activations))
        prepared = prepare_pt2e(exported.module(), quantizer)
        for image in calibration_images():
            prepared(_layout(functional.pad(image, (EDGE_PADDING,) * 4, mode="replicate")))
        converted = convert_pt2e(prepared)
    prepared_at = time.perf_counter()

    from torch._dynamo.utils import counters

    fused_before = counters["inductor"][FUSED_COUNTER]
    # The global switch, not torch.compile(options={"freezing": True}): with the option alone the weights
    # stay graph inputs, onednn.qconv_prepack is not folded and the compile fails (torchao 0.18, torch 2.14).
    # It is read at each (re)compile, so it stays set; nothing else in the benchmarks uses torch.compile.
    torch._inductor.config.freezing = True
    # Without this a square first input makes the compile assume height == width, and the next shape compiles
    # again. (A second compile still comes at about 82 x 82 pixels: ATen's choice of oneDNN for an fp32 conv
    # of more than 20480 input values is guarded on, in the head's dequantize + conv pattern.)
    torch.fx.experimental._config.use_duck_shape = False
    compiled = torch.compile(converted, backend="inductor", dynamic=True)

    def run(x: torch.Tensor) -> torch.Tensor:
        # Freezing (and so the int8 fusion) applies only without autograd. A copy made under inference_mode
        # each call keeps the guards (grad mode, inference tensor, layout) the same whoever calls it.
        with torch.inference_mode():
            return compiled(x.to(memory_format=torch.channels_last, copy=True))

    run(example)
    done = time.perf_counter()
    fused = counters["inductor"][FUSED_COUNTER] - fused_before
    convs = sum(node.target == torch.ops.aten.conv2d.default for node in exported.graph.nodes)
    run.fused_convs, run.convs_in_model = fused, convs  # type: ignore[attr-defined]
    run.prepare_s, run.compile_s = prepared_at - start, done - prepared_at  # type: ignore[attr-defined]
    if verbose:
        print(
            f"torchao PT2E int8 ({activations}) x{scale}: export + calibrate + convert {prepared_at - start:.1f} s, "
            f"Inductor compile (first call, {tuple(example.shape[2:])}) {done - prepared_at:.1f} s, "
            f"{fused} convolutions fused into oneDNN int8 kernels",
            file=sys.stderr,
        )
    return run


def main() -> None:
    """Smoke test: one scale, one size, one timed call, PSNR of the output against fp32's."""
    from mdsr.weights import load_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--activations", choices=ACTIVATIONS, default="histogram")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_inference import photo

    model = load_model(args.weights)
    lr = functional.pad(photo(args.size), (EDGE_PADDING,) * 4, mode="replicate")
    run = torchao_int8_forward(model, args.scale, lr, activations=args.activations)
    for _ in range(args.runs):
        start = time.perf_counter()
        out = run(lr)
        print(f"one call at {args.size}x{args.size} (+ edge padding): {time.perf_counter() - start:.3f} s")
    with torch.inference_mode():
        reference = model(lr, args.scale)
    crop = EDGE_PADDING * args.scale
    out, reference = (t[:, :, crop:-crop, crop:-crop].clamp(0, 1) for t in (out, reference))
    mse = (out - reference).square().mean().item()
    print(f"PSNR against fp32: {10 * torch.log10(torch.tensor(1 / max(mse, 1e-12))).item():.2f} dB")
    print(f"convolutions fused into oneDNN int8: {run.fused_convs} of {run.convs_in_model} in the graph")


if __name__ == "__main__":
    main()
