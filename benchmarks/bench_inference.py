"""Inference speed and memory of this package against super-image's MdsrModel, side by side.

Three contenders run the same weights (the bundled ones, or --weights) in one process, timed
interleaved (warm-up, then each in turn), medians reported: this package's default path
(precision "auto"), its opt-in int8 path, and super-image's fp32 forward. Peak memory is measured in
a fresh child process per configuration. Quality of each fast path is its PSNR difference against
fp32 whole-image inference in super-image's order of operations, on Set5 (when ../shared/data is
there) and the bundled examples, at x2, x3 and x4.

super-image needs torchvision, which does not import beside this project's torch 2.13.0, so this
runs in its own environment:

    python3 -m venv .bench && .bench/bin/pip install torch==2.14.1 torchvision==0.29.1 super-image -e .
    .bench/bin/python benchmarks/bench_inference.py [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdsr.inference import EDGE_PADDING, choose_tile, resolve_precision, super_resolve  # noqa: E402
from mdsr.model import MDSR  # noqa: E402
from mdsr.quantize import Int8Conv2d, int8_available, int8_model  # noqa: E402
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
    tile = choose_tile(lr.shape[2], lr.shape[3], scale, "auto")
    return super_resolve(model, lr, scale, precision=precision, tile=tile)


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
    fast_path(ours, x, {scale})
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


def quality(model: MDSR, scales: list[int], precisions: dict[str, MDSR]) -> list[dict]:
    """PSNR of each fast path minus PSNR of fp32 whole-image inference (super-image's arithmetic, on
    the same edge-padded input): what tiling, striping and precision cost."""
    from mdsr.evaluate import Pair, load_benchmark
    from mdsr.imaging import array_to_tensor, downscale_array, load_image_array, tensor_to_array
    from mdsr.metrics import psnr

    rows = []
    for scale in scales:
        sets = {}
        set5 = ROOT.parent / "shared" / "data" / "benchmark" / "Set5"
        if set5.is_dir():
            sets["Set5"] = load_benchmark(set5, scale)
        examples = []
        for name in ("astronaut", "coffee", "chelsea"):
            hr = load_image_array(ROOT / "examples" / f"{name}.png")
            hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
            examples.append(Pair(name, downscale_array(hr, scale), hr))
        sets["examples"] = examples
        for name, pairs in sets.items():
            diffs: dict[str, list[float]] = {p: [] for p in precisions}
            for pair in pairs:
                lr = array_to_tensor(pair.lr)
                with torch.enable_grad():  # the reference path: super-image's own order of operations
                    pad, crop = EDGE_PADDING, EDGE_PADDING * scale  # on the same edge-padded input
                    whole = model(torch.nn.functional.pad(lr, (pad,) * 4, mode="replicate"), scale).detach()
                    whole = whole[:, :, crop:-crop, crop:-crop].clamp(0, 1)
                    reference = psnr(tensor_to_array(whole), pair.hr, shave=scale)
                for precision, runner in precisions.items():
                    fast = psnr(tensor_to_array(fast_path(runner, lr, scale, precision)), pair.hr, shave=scale)
                    diffs[precision].append(fast - reference)
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
    parser.add_argument("--weights", default=None, help="weights for both models (default: bundled)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument(
        "--peer-large", action="store_true", help="also time super-image on the large sizes (slow, GBs)"
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    ours = load_model(args.weights)
    ours_int8 = int8_model(ours) if int8_available() else None
    precision = resolve_precision("auto")
    kinds = ["fp32", "bf16"] + (["int8"] if ours_int8 is not None else [])
    ceilings = {kind: conv_ceiling(kind) for kind in kinds}
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"auto precision: {precision}; int8 available: {ours_int8 is not None}; 3x3-conv ceiling (GFLOP/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in ceilings.items())
    )

    results = []
    for scale in args.scales:
        theirs = super_image_model(ours, scale)
        with torch.inference_mode():
            x = torch.rand(1, 3, 48, 40)
            agree = (ours(x, scale) - theirs(x)).abs().max().item()
        for size in args.sizes:
            lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
            with_peer = size <= 256 or args.peer_large
            contenders = {"ours": partial(fast_path, ours, lr, scale)}
            if ours_int8 is not None:
                contenders["ours_int8"] = partial(fast_path, ours_int8, lr, scale, "int8")
            if with_peer:
                contenders["super_image"] = partial(theirs, lr)
            times = time_interleaved(contenders, args.runs if size <= 256 else max(1, args.runs // 3))
            gflop = conv_gflop(ours, scale, size, size)
            row = {
                "scale": scale,
                "size": size,
                "precision": precision,
                "fp32_outputs_max_abs_diff": agree,
                "gflop": gflop,
                **{f"{name}_s": seconds(times.get(name)) for name in ("ours", "ours_int8", "super_image")},
            }
            for name in ("ours", "ours_int8"):
                mine, peer = row[f"{name}_s"], row["super_image_s"]
                row[f"{name}_speedup"] = peer / mine if mine and peer else None
                row[f"{name}_gflops"] = gflop / mine if mine else None
            row["ours_fraction_of_ceiling"] = row["ours_gflops"] / ceilings[precision]
            if not args.no_memory:
                for name, which in (("ours", "ours"), ("ours_int8", "ours-int8"), ("super_image", "theirs")):
                    if row[f"{name}_s"] is not None:
                        row[f"{name}_peak_rss_mb"] = peak_rss_child(which, scale, size, args.weights)
            results.append(row)
            print(json.dumps(row), file=sys.stderr)

    runners = {"auto": ours} | ({"int8": ours_int8} if ours_int8 is not None else {})
    quality_rows = quality(ours, [2, 3, 4], runners)
    print_tables(results, quality_rows, precision)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": platform.processor(),
                    "cores": os.cpu_count(),
                    "torch": torch.__version__,
                    "auto_precision": precision,
                    "ceiling_gflops": ceilings,
                    "timings": results,
                    "quality": quality_rows,
                },
                indent=2,
            )
        )


def print_tables(results: list[dict], quality_rows: list[dict], precision: str) -> None:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    print()
    print(
        f"| scale | input | ours {precision} (s) | ours int8 (s) | super-image fp32 (s) | speed-up {precision} | "
        f"speed-up int8 | GFLOP | GFLOP/s {precision} (of ceiling) | GOP/s int8 | peak RSS MB: ours {precision} / "
        "int8 / super-image |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        rss = " / ".join(num(r.get(f"{n}_peak_rss_mb"), ".0f") for n in ("ours", "ours_int8", "super_image"))
        print(
            f"| x{r['scale']} | {r['size']}x{r['size']} | {num(r['ours_s'], '.2f')} | {num(r['ours_int8_s'], '.2f')} | "
            f"{num(r['super_image_s'], '.2f') if r['super_image_s'] else 'not run'} | "
            f"{times(r['ours_speedup'])} | {times(r['ours_int8_speedup'])} | {r['gflop']:.0f} | "
            f"{r['ours_gflops']:.0f} ({r['ours_fraction_of_ceiling']:.0%}) | {num(r['ours_int8_gflops'], '.0f')} | {rss} |"
        )
    print()
    names = [k.removesuffix("_max_abs_psnr_diff_db") for k in quality_rows[0] if k.endswith("_max_abs_psnr_diff_db")]
    print(
        "| set | scale | images | "
        + " | ".join(f"{n}: max abs / mean PSNR difference vs fp32 whole image (dB)" for n in names)
        + " |"
    )
    print("| --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for q in quality_rows:
        cells = [f"{q[f'{n}_max_abs_psnr_diff_db']:.4f} / {q[f'{n}_mean_psnr_diff_db']:+.4f}" for n in names]
        print(f"| {q['set']} | x{q['scale']} | {q['images']} | " + " | ".join(cells) + " |")
    print(
        f"\nfp32 outputs of the two implementations agree to {max(r['fp32_outputs_max_abs_diff'] for r in results):.2e}"
    )


if __name__ == "__main__":
    main()
