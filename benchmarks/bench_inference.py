"""Inference speed and memory of this package against super-image's MdsrModel, side by side.

Both run the same weights (the bundled ones, or random with --random-weights) in one process, timed
interleaved (warm-up, then ours / theirs alternately), medians reported. Peak memory is measured in
a fresh child process per configuration. Quality of the fast path is the PSNR difference against fp32
whole-image inference in super-image's order of operations, on Set5 (when ../shared/data is there)
and the bundled examples.

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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdsr.inference import choose_tile, resolve_precision, super_resolve  # noqa: E402
from mdsr.model import MDSR  # noqa: E402
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


def conv_ceiling(dtype: torch.dtype) -> float:
    """GFLOP/s of a 3x3 conv 64->64 on 128x128, channels_last: what the convolutions can reach here."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else torch.autocast("cpu", enabled=False)
    )
    with torch.inference_mode(), ctx:
        for _ in range(3):
            conv(x)
        runs = []
        for _ in range(10):
            start = time.perf_counter()
            conv(x)
            runs.append(time.perf_counter() - start)
    return 2 * 64 * 64 * 9 * 128 * 128 / statistics.median(runs) / 1e9


def fast_path(model: MDSR, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """What mdsr.upscale runs by default: auto precision, auto tiles, striped trunk for large images."""
    return super_resolve(model, lr, scale, precision="auto", tile=choose_tile(lr.shape[2], lr.shape[3], scale, "auto"))


def peak_rss_child(which: str, scale: int, size: int, weights: str | None) -> float:
    code = f"""
import sys, torch
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from bench_inference import fast_path, super_image_model
from mdsr.weights import load_model
from mdsr.model import MDSR
torch.manual_seed(0)
ours = load_model({weights!r}) if {weights!r} else MDSR().eval()
x = torch.rand(1, 3, {size}, {size})
if {which!r} == "ours":
    fast_path(ours, x, {scale})
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


def time_pair(ours, theirs, lr: torch.Tensor, scale: int, runs: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    with torch.inference_mode():
        fast_path(ours, lr, scale)  # warm-up
        if theirs is not None:
            theirs(lr)
        for _ in range(runs):
            start = time.perf_counter()
            fast_path(ours, lr, scale)
            a.append(time.perf_counter() - start)
            if theirs is not None:
                start = time.perf_counter()
                theirs(lr)
                b.append(time.perf_counter() - start)
    return a, b


def quality(model: MDSR, scales: list[int]) -> list[dict]:
    """PSNR of the fast path minus PSNR of fp32 whole-image inference (super-image's arithmetic)."""
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
            diffs = []
            for p in pairs:
                lr = array_to_tensor(p.lr)
                with torch.enable_grad():  # the reference path: super-image's own order of operations
                    reference = model(lr, scale).detach().clamp(0, 1)
                fast = fast_path(model, lr, scale)
                diffs.append(
                    psnr(tensor_to_array(fast), p.hr, shave=scale) - psnr(tensor_to_array(reference), p.hr, shave=scale)
                )
            rows.append(
                {"set": name, "scale": scale, "images": len(pairs), "max_abs_psnr_diff_db": max(abs(d) for d in diffs)}
            )
    return rows


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
    precision = resolve_precision("auto")
    fp32_ceiling, bf16_ceiling = conv_ceiling(torch.float32), conv_ceiling(torch.bfloat16)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"auto precision: {precision}; 3x3-conv ceiling: {fp32_ceiling:.0f} GFLOP/s fp32, {bf16_ceiling:.0f} GFLOP/s bf16"
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
            runs = args.runs if size <= 256 else max(1, args.runs // 3)
            a, b = time_pair(ours, theirs if with_peer else None, lr, scale, runs)
            gflop = conv_gflop(ours, scale, size, size)
            row = {
                "scale": scale,
                "size": size,
                "precision": precision,
                "fp32_outputs_max_abs_diff": agree,
                "ours_s": statistics.median(a),
                "super_image_s": statistics.median(b) if b else None,
                "gflop": gflop,
                "ours_gflops": gflop / statistics.median(a),
            }
            row["speedup"] = row["super_image_s"] / row["ours_s"] if b else None
            row["fraction_of_best_ceiling"] = row["ours_gflops"] / max(fp32_ceiling, bf16_ceiling)
            if not args.no_memory:
                row["ours_peak_rss_mb"] = peak_rss_child("ours", scale, size, args.weights)
                row["super_image_peak_rss_mb"] = (
                    peak_rss_child("theirs", scale, size, args.weights) if with_peer else None
                )
            results.append(row)
            print(json.dumps(row), file=sys.stderr)

    quality_rows = quality(ours, [2, 3, 4])
    print()
    print(
        "| scale | input | ours (s) | super-image fp32 (s) | speed-up | GFLOP | ours GFLOP/s | of ceiling | ours peak RSS (MB) | super-image peak RSS (MB) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        peer = f"{r['super_image_s']:.2f}" if r["super_image_s"] else "not run"
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        rss = lambda v: f"{v:.0f}" if v else "-"  # noqa: E731
        print(
            f"| x{r['scale']} | {r['size']}x{r['size']} | {r['ours_s']:.2f} | {peer} | {speed} | {r['gflop']:.0f} | "
            f"{r['ours_gflops']:.0f} | {r['fraction_of_best_ceiling']:.0%} | {rss(r.get('ours_peak_rss_mb'))} | "
            f"{rss(r.get('super_image_peak_rss_mb'))} |"
        )
    print()
    print("| set | scale | images | max abs PSNR difference, fast path vs fp32 whole image (dB) |")
    print("| --- | --- | --- | --- |")
    for q in quality_rows:
        print(f"| {q['set']} | x{q['scale']} | {q['images']} | {q['max_abs_psnr_diff_db']:.4f} |")
    print(
        f"\nfp32 outputs of the two implementations agree to {max(r['fp32_outputs_max_abs_diff'] for r in results):.2e}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": platform.processor(),
                    "cores": os.cpu_count(),
                    "torch": torch.__version__,
                    "auto_precision": precision,
                    "ceiling_gflops": {"fp32": fp32_ceiling, "bf16": bf16_ceiling},
                    "timings": results,
                    "quality": quality_rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
