"""Inference speed and memory of this package against super-image's MdsrModel and OpenVINO, side by side.

The contenders run the same weights (the bundled ones, or --weights) in one process, timed interleaved
(warm-up, then each in turn), medians reported: this package's paths (fp32, bf16 where the CPU has it
natively, int8; "auto" is one of them, named in the output; "auto" again with the fused attention kernels
of ``mdsr.kernels`` switched off, to show what they bring), super-image's fp32 forward, when
``openvino`` is installed, the same network converted to OpenVINO (fp32, and bf16 where native; NNCF int8; the
network with its HR stage folded, as this package runs it: ``mdsr.folding``),
and, when ``torchao`` is installed, torchao's PT2E int8 with the X86InductorQuantizer compiled by Inductor
(``torchao_int8.py``: its default config, and the same with min/max activation ranges), whole image. The
torchao runners' export + calibration + convert and compile times are printed apart from the timings (the
first compile is paid before timing, per scale; a second one for small inputs, in the quality check). Peak memory is measured in a fresh child process per configuration. Quality of each path is its
PSNR difference against fp32 whole-image inference in super-image's order of operations, on Set5 (when
../shared/data is there) and the bundled examples, at x2, x3 and x4.

super-image needs torchvision, which does not import beside this project's torch 2.13.0, so this
runs in its own environment (this package is imported from the checkout, not installed):

    python3 -m venv .bench && .bench/bin/pip install torch==2.14.1 torchvision==0.29.1 super-image openvino nncf torchao
    .bench/bin/pip install numpy pillow scikit-image opencv-python-headless safetensors huggingface_hub tqdm matplotlib
    .bench/bin/python benchmarks/bench_inference.py [--json results.json] [--torchao minmax | --torchao]

(torchao 0.18.0 with torch 2.14.1; ``--torchao`` alone leaves its contenders out.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mdsr  # noqa: E402
from mdsr import kernels  # noqa: E402
from mdsr.folding import fold_upsamplers  # noqa: E402
from mdsr.inference import (  # noqa: E402
    EDGE_PADDING,
    PreparedModels,
    bf16_supported,
    choose_tile,
    resolve_precision,
    super_resolve,
)
from mdsr.model import MDSR  # noqa: E402
from mdsr.quantize import Int8Conv2d, int8_available, int8_model, int8_weight_bits  # noqa: E402
from mdsr.weights import load_model  # noqa: E402


def super_image_model(ours: MDSR, scale: int):
    from super_image import MdsrConfig, MdsrModel

    theirs = MdsrModel(MdsrConfig(scale=scale, bam=True)).eval()
    keep = {
        k: v
        for k, v in ours.state_dict().items()
        if not (k.startswith(("pre_process.", "upsample.")) and k.split(".")[1] != str(scale))
    }
    missing = (
        set(theirs.state_dict()) - set(keep) - {"sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"}
    )
    assert not missing, missing
    theirs.load_state_dict(keep, strict=False)
    return theirs


BLOCK_CONV = re.compile(r"__module\.mdsr\.(body\.\d+|pre_process\.\d\.\d)\.body\.[02]\.0/")


def openvino_runner(ours: MDSR, scale: int, precision: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The network for ``scale`` converted to OpenVINO once (dynamic height and width), whole image.
    ``precision``: "f32" or "bf16" (the inference precision hint), or "int8" / "int8+bf16": NNCF's
    post-training int8 on the residual blocks' convolutions only (the rest in f32 or bf16), calibrated on the
    same public-domain images as this package's int8 (``quantize.calibration_images``). None where openvino
    (or, for int8, nncf) is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None

    class Network(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mdsr = ours

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():  # super-image's order of operations: no in-place ops to trace
                return self.mdsr(x, scale)

    converted = ov.convert_model(Network(), example_input=torch.rand(1, 3, 32, 32), input=[1, 3, -1, -1])
    if precision.startswith("int8"):
        try:
            import nncf
        except ImportError:
            return None
        from mdsr.quantize import calibration_images

        convs = [op.get_friendly_name() for op in converted.get_ops() if op.get_type_name() == "Convolution"]
        others = [name for name in convs if not BLOCK_CONV.match(name)]
        elementwise = ["Add", "Multiply", "ReduceMean", "ReduceMax", "Sigmoid", "PRelu", "DepthToSpace", "MatMul"]
        calibration = [functional.pad(t, (EDGE_PADDING,) * 4, mode="replicate").numpy() for t in calibration_images()]
        converted = nncf.quantize(
            converted, nncf.Dataset(calibration), subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=others, types=elementwise, validate=False),
        )  # fmt: skip
    hint = "bf16" if precision.endswith("bf16") else "f32"
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(converted, "CPU", config)

    def run(lr: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(compiled(lr.numpy())[0])

    return run


TORCHAO_NAMES = {"histogram": "torchao_int8", "minmax": "torchao_int8_minmax"}
TORCHAO_LABELS = {
    "torchao_int8": "torchao PT2E int8 (Inductor)",
    "torchao_int8_minmax": "torchao PT2E int8 minmax (Inductor)",
}
_TORCHAO_MISSING: list[str] = []  # why torchao could not be imported, once said


def torchao_runners(
    ours: MDSR, scale: int, variants: list[str], example: torch.Tensor, setup: dict[str, dict]
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """torchao's PT2E int8 runners for ``scale`` (``torchao_int8.torchao_int8_forward``), one per activation
    observer in ``variants``, each compiled on ``example`` now; their preparation and compile times go into
    ``setup``. A variant that fails is left out with one line saying why (torchao missing: said once)."""
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for activations in variants:
        name = TORCHAO_NAMES[activations]
        if _TORCHAO_MISSING:
            break
        try:
            from torchao_int8 import torchao_int8_forward

            run = torchao_int8_forward(ours, scale, example, activations=activations)
        except ImportError as err:
            _TORCHAO_MISSING.append(str(err))
            print(f"torchao contenders not run: {err} (pip install torchao)", file=sys.stderr)
            break
        except Exception as err:  # noqa: BLE001 (a contender that fails must not stop the benchmark)
            print(f"{name} x{scale}: not run ({one_line(err)})", file=sys.stderr)
            continue
        runners[name] = run
        setup.setdefault(name, {})[f"x{scale}"] = {
            "prepare_s": run.prepare_s, "first_compile_s": run.compile_s,
            "compile_input": list(example.shape[2:]), "fused_convs": run.fused_convs, "convs": run.convs_in_model,
        }  # fmt: skip
    return runners


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


def photo(size: int) -> torch.Tensor:
    """A size x size photograph (scikit-image's public-domain astronaut), as the network takes it: what
    people upscale. (Random noise drives the activations far past any photo's, which only int8's range
    check pays for: its blocks are then recomputed.)"""
    from mdsr.imaging import array_to_tensor

    return array_to_tensor(np.asarray(photo_image(size)))


def photo_image(size: int) -> Image.Image:
    """The same photograph as a PIL image: what ``mdsr.upscale`` takes."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS)


def conv_gflop(model: MDSR, scale: int, height: int, width: int) -> float:
    """Multiply-adds x 2 of every convolution for one (height, width) input."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * module.in_channels * module.out_channels // module.groups * k * output.shape[2] * output.shape[3]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32), scale)
    for h in handles:
        h.remove()
    return total * (height * width) / (32 * 32) / 1e9


def conv_ceiling(kind: str) -> float:
    """GFLOP/s of a 3x3 conv 64->64 on 128x128, channels_last: what the convolutions can reach here.
    ``kind``: "fp32", "bf16" (autocast) or "int8" (the int8 path's convolution, its quantisation included)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    if kind == "int8":
        conv = Int8Conv2d(conv)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16")
    with torch.inference_mode(), ctx:
        for _ in range(3):
            conv(x)
        runs = []
        for _ in range(10):
            start = time.perf_counter()
            conv(x)
            runs.append(time.perf_counter() - start)
    return 2 * 64 * 64 * 9 * 128 * 128 / statistics.median(runs) / 1e9


def fast_path(model: MDSR, lr: torch.Tensor, scale: int, precision: str = "auto") -> torch.Tensor:
    """What mdsr.upscale runs: the given precision ("auto" by default), auto tiles, striped trunk."""
    mode = resolve_precision(precision)
    tile = choose_tile(lr.shape[2], lr.shape[3], scale, "auto")
    return super_resolve(PREPARED.get(model, mode), lr, scale, precision=mode, tile=tile)


PREPARED = PreparedModels()  # int8 copies made once per model, as the demo and the CLI keep them


def library_default(model: MDSR, image: Image.Image, scale: int) -> Image.Image:
    """What a script gets from ``mdsr.upscale(model, image, scale)`` called per image with every default
    (PIL in and out; its prepared copies kept in ``inference.DEFAULT_PREPARED`` from the first call)."""
    return mdsr.upscale(model, image, scale)


def with_eager_passes(run: Callable[[], object]) -> object:
    """``run`` with the fused attention kernels off (``mdsr.kernels``): what the default path gives without them."""
    built = kernels._library
    kernels._library = lambda: None  # type: ignore[assignment]
    try:
        return run()
    finally:
        kernels._library = built


def peak_rss_child(which: str, scale: int, size: int, weights: str | None) -> float:
    code = f"""
import sys, torch
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from bench_inference import fast_path, super_image_model
from mdsr.weights import load_model
from mdsr.model import MDSR
from mdsr.quantize import int8_model
torch.manual_seed(0)
ours = load_model({weights!r}) if {weights!r} else MDSR().eval()
x = torch.rand(1, 3, {size}, {size})
if {which!r} == "ours":
    fast_path(ours, x, {scale}, "fp32")
elif {which!r} == "ours-int8":
    ours = int8_model(ours)
    fast_path(ours, x, {scale}, "int8")
else:
    theirs = super_image_model(ours, {scale})
    del ours
    with torch.inference_mode():
        theirs(x)
# VmHWM is this process's own peak (ru_maxrss would carry the parent's over fork and exec).
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def works(name: str, run: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor) -> bool:
    """Whether a whole-image runner runs on ``lr`` (a torchao runner may compile again for a new shape: paid
    here, outside the timing); one line where it does not, and it is left out of this size's timing."""
    if not name.startswith("torchao"):
        return True
    try:
        run(lr)
    except Exception as err:  # noqa: BLE001 (a contender that fails must not stop the benchmark)
        print(f"{name} on {lr.shape[2]}x{lr.shape[3]}: not timed ({one_line(err)})", file=sys.stderr)
        return False
    return True


def time_interleaved(contenders: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Each contender once to warm up, then ``runs`` rounds of each in turn: a busy moment on the
    machine slows one round of every contender, not all runs of one."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.inference_mode():
        for run in contenders.values():
            run()
        for _ in range(runs):
            for name, run in contenders.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def quality(
    model: MDSR, scales: list[int], precisions: dict[str, MDSR], others: dict[int, dict[str, Callable]] | None = None
) -> list[dict]:
    """PSNR of each fast path minus PSNR of fp32 whole-image inference (super-image's arithmetic, on
    the same edge-padded input): what tiling, striping and precision cost."""
    from mdsr.evaluate import Pair, load_benchmark
    from mdsr.imaging import array_to_tensor, bicubic_downscale, modcrop, read_rgb8, tensor_to_array, to_uint
    from mdsr.metrics import psnr

    def psnr_of(sr: torch.Tensor, pair: Pair, scale: int) -> float:
        return psnr(to_uint(tensor_to_array(sr)), pair.hr, shave=scale)

    rows = []
    for scale in scales:
        sets = {}
        set5 = ROOT.parent / "shared" / "data" / "benchmark" / "Set5"
        if set5.is_dir():
            sets["Set5"] = load_benchmark(set5, scale)
        examples = []
        for name in ("astronaut", "coffee", "chelsea"):
            hr = modcrop(read_rgb8(ROOT / "examples" / f"{name}.png"), scale)
            examples.append(Pair(name, bicubic_downscale(hr, scale), hr))
        sets["examples"] = examples
        for name, pairs in sets.items():
            diffs: dict[str, list[float]] = {p: [] for p in precisions}
            for pair in pairs:
                lr = array_to_tensor(pair.lr)
                with torch.enable_grad():  # the reference path: super-image's own order of operations
                    pad, crop = EDGE_PADDING, EDGE_PADDING * scale  # on the same edge-padded input
                    whole = model(torch.nn.functional.pad(lr, (pad,) * 4, mode="replicate"), scale).detach()
                    whole = whole[:, :, crop:-crop, crop:-crop].clamp(0, 1)
                    reference = psnr_of(whole, pair, scale)
                for precision, runner in precisions.items():
                    fast = psnr_of(fast_path(runner, lr, scale, precision), pair, scale)
                    diffs[precision].append(fast - reference)
                for other, run in (others or {}).get(scale, {}).items():  # whole image, same edge padding
                    try:
                        out = run(torch.nn.functional.pad(lr, (pad,) * 4, mode="replicate"))
                    except Exception as err:  # noqa: BLE001 (e.g. a torchao recompile for a new shape failing)
                        print(f"{other} x{scale} {pair.name}: failed ({one_line(err)})", file=sys.stderr)
                        continue
                    out = out[:, :, crop:-crop, crop:-crop].clamp(0, 1)
                    diffs.setdefault(other, []).append(psnr_of(out, pair, scale) - reference)
            row = {"set": name, "scale": scale, "images": len(pairs)}
            for precision, d in diffs.items():
                row[f"{precision}_max_abs_psnr_diff_db"] = max(abs(v) for v in d)
                row[f"{precision}_mean_psnr_diff_db"] = statistics.mean(d)
            rows.append(row)
    return rows


def seconds(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="weights for every contender (default: bundled)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument(
        "--peer-large", action="store_true", help="also time super-image on the large sizes (slow, GBs)"
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--torchao", nargs="*", choices=list(TORCHAO_NAMES), default=list(TORCHAO_NAMES),
        help="torchao PT2E int8 contenders by activation observer (default: both; none: --torchao alone)",
    )  # fmt: skip
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    ours = load_model(args.weights)
    folded = fold_upsamplers(ours)  # what OpenVINO and torchao convert: the network as this package runs it
    ours_int8 = int8_model(ours) if int8_available() else None
    auto = resolve_precision("auto")
    native_bf16 = bf16_supported()
    kinds = ["fp32"] + (["bf16"] if native_bf16 else []) + (["int8"] if ours_int8 is not None else [])
    ceilings = {kind: conv_ceiling(kind) for kind in kinds}
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; auto precision: {auto} "
        f"(int8 weights: {int8_weight_bits()} bits); "
        f"native bf16: {native_bf16}; 3x3-conv ceiling (GFLOP/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in ceilings.items())
    )

    results, openvino, torchao_setup = [], {}, {}
    for scale in args.scales:
        theirs = super_image_model(ours, scale)
        with torch.inference_mode():
            x = torch.rand(1, 3, 48, 40)
            agree = (ours(x, scale) - theirs(x)).abs().max().item()
        variants = ["f32", "int8"] + (["bf16", "int8+bf16"] if native_bf16 else [])
        openvino[scale] = {
            f"openvino_{p}": r for p in variants if (r := openvino_runner(folded, scale, p)) is not None
        }
        # Whole-image runners beside OpenVINO's (timed on the same unpadded photo, checked on the same padded
        # inputs); compiled here on the first size's photo, so the compile is not in any timing.
        openvino[scale] |= torchao_runners(folded, scale, args.torchao, photo(args.sizes[0]), torchao_setup)
        for size in args.sizes:
            lr = photo(size)
            contenders = {
                kind: partial(fast_path, ours_int8 if kind == "int8" else ours, lr, scale, kind) for kind in kinds
            }
            contenders["library_default"] = partial(library_default, ours, photo_image(size), scale)
            if kernels.available():
                contenders[f"{auto}_eager"] = partial(with_eager_passes, contenders[auto])
            if size <= 256 or args.peer_large:
                contenders["super_image"] = partial(theirs, lr)
            contenders |= {name: partial(run, lr) for name, run in openvino[scale].items() if works(name, run, lr)}
            times = time_interleaved(contenders, args.runs if size <= 256 else max(1, args.runs // 3))
            gflop = conv_gflop(ours, scale, size, size)
            row = {"scale": scale, "size": size, "auto": auto, "fp32_outputs_max_abs_diff": agree, "gflop": gflop}
            for name, values in times.items():
                row[f"{name}_s"] = seconds(values)
                peer = seconds(times.get("super_image"))
                row[f"{name}_speedup"] = peer / row[f"{name}_s"] if peer else None
            for kind in kinds:  # the share of the measured 3x3-convolution rate the whole network reaches
                row[f"{kind}_fraction_of_ceiling"] = gflop / row[f"{kind}_s"] / ceilings[kind]
            if not args.no_memory:
                for name, which in (("fp32", "ours"), ("int8", "ours-int8"), ("super_image", "theirs")):
                    if row.get(f"{name}_s") is not None:
                        row[f"{name}_peak_rss_mb"] = peak_rss_child(which, scale, size, args.weights)
            results.append(row)
            print(json.dumps(row), file=sys.stderr)

    runners = {kind: ours_int8 if kind == "int8" else ours for kind in kinds}
    quality_rows = quality(ours, [2, 3, 4], runners, openvino)
    print_tables(results, quality_rows, auto)
    for name, per_scale in torchao_setup.items():
        print(
            f"{TORCHAO_LABELS[name]}: "
            + "; ".join(
                f"{s}: export + calibrate + convert {v['prepare_s']:.1f} s, first compile {v['first_compile_s']:.1f} s "
                f"(on {v['compile_input'][0]}x{v['compile_input'][1]}), {v['fused_convs']} of {v['convs']} convs fused"
                for s, v in per_scale.items()
            )
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": cpu_name(),
                    "fused_kernels": kernels.available(),
                    "cores": os.cpu_count(),
                    "torch": torch.__version__,
                    "auto_precision": auto,
                    "int8_weight_bits": int8_weight_bits(),
                    "ceiling_gflops": ceilings,
                    "timings": results,
                    "quality": quality_rows,
                    "torchao_setup": torchao_setup,
                },
                indent=2,
            )
        )


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def print_tables(results: list[dict], quality_rows: list[dict], auto: str) -> None:
    names = [
        n
        for n in (
            "library_default", "fp32", "bf16", "int8", "fp32_eager", "int8_eager", "openvino_f32", "openvino_bf16", "openvino_int8", "openvino_int8+bf16",
            "torchao_int8", "torchao_int8_minmax", "super_image",
        )
        if f"{n}_s" in results[0]
    ]

    def cell(r: dict, name: str) -> str:
        t, x = r.get(f"{name}_s"), r.get(f"{name}_speedup")
        if t is None:
            return "not run"
        return f"{t:.2f} s" + (f" ({x:.2f}x)" if x and name != "super_image" else "")

    label = {n: f"ours {n}" + (" = auto" if n == auto else "") for n in ("fp32", "bf16", "int8")} | TORCHAO_LABELS
    label |= {f"{n}_eager": f"ours {n}, eager attention passes" for n in ("fp32", "int8")}
    label["library_default"] = "mdsr.upscale per image, defaults"
    print(f'\nTime per image (median), and speed-up over super-image\'s fp32 forward; "auto" here is {auto}')
    print(
        "| scale | input | "
        + " | ".join(label.get(n, n.replace("_", " ")) for n in names)
        + " | peak RSS MB: fp32 / int8 / super-image |"
    )
    print("| --- | --- | " + " | ".join("---" for _ in names) + " | --- |")
    for r in results:
        rss = " / ".join(
            f"{r[k]:.0f}" if r.get(k) else "-"
            for k in ("fp32_peak_rss_mb", "int8_peak_rss_mb", "super_image_peak_rss_mb")
        )
        print(f"| x{r['scale']} | {r['size']}x{r['size']} | " + " | ".join(cell(r, n) for n in names) + f" | {rss} |")
    print("\nShare of the measured 3x3-convolution rate (the header's ceiling) the whole network reaches:")
    for r in results:
        shares = [f"{k.removesuffix('_fraction_of_ceiling')} {v:.0%}" for k, v in r.items() if k.endswith("_fraction_of_ceiling")]
        print(f"- x{r['scale']}, {r['size']}x{r['size']}: " + ", ".join(shares))
    print()
    paths = list(
        dict.fromkeys(
            k.removesuffix("_max_abs_psnr_diff_db")
            for q in quality_rows
            for k in q
            if k.endswith("_max_abs_psnr_diff_db")
        )
    )
    print("PSNR change per image against fp32 whole-image inference (dB): max |change| / mean change")
    print("| set | scale | images | " + " | ".join(paths) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in paths) + " |")
    for q in quality_rows:
        cells = [
            f"{q[f'{n}_max_abs_psnr_diff_db']:.4f} / {q[f'{n}_mean_psnr_diff_db']:+.4f}"
            if f"{n}_max_abs_psnr_diff_db" in q
            else "not run"
            for n in paths
        ]
        print(f"| {q['set']} | x{q['scale']} | {q['images']} | " + " | ".join(cells) + " |")
    print(
        f"\nfp32 outputs of the two implementations agree to {max(r['fp32_outputs_max_abs_diff'] for r in results):.2e}"
    )


if __name__ == "__main__":
    main()
