"""CUDA inference time: x4 (or another scale) of a 1920x1080 photo, whole image, bf16, channels_last.

Run on a machine with an NVIDIA GPU (``scripts/train_on_gpu.sh`` calls it after training):

    python benchmarks/bench_cuda.py [--weights W] [--scale 4] [--size 1920x1080] [--json out.json]

Times ``mdsr.inference.super_resolve`` (trunk whole, HR stage untiled) from a tensor already on the
GPU to the clamped output on the GPU, median of ``--repeats`` after warm-ups, and prints one table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdsr.inference import super_resolve
from mdsr.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


def photo(width: int, height: int) -> torch.Tensor:
    """The bundled astronaut photo (public domain) resized to width x height, (1, 3, H, W) in [0, 1]."""
    image = Image.open(ROOT / "examples" / "astronaut.png").convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].float().div(255)


def time_one(model, lr: torch.Tensor, scale: int, precision: str, repeats: int) -> list[float]:
    for _ in range(3):
        super_resolve(model, lr, scale, precision=precision, tile=None)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        super_resolve(model, lr, scale, precision=precision, tile=None)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--size", default="1920x1080", help="input WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda: no CUDA device")
    torch.backends.cudnn.benchmark = True  # one input size, timed many times: let cuDNN pick its kernels
    width, height = (int(v) for v in args.size.lower().split("x"))
    model = load_model(args.weights, scale=args.scale).cuda().eval()
    lr = photo(width, height).cuda()
    rows = []
    for precision in ("bf16", "fp32"):
        torch.cuda.reset_peak_memory_stats()
        times = time_one(model, lr, args.scale, precision, args.repeats)
        rows.append(
            {
                "precision": precision,
                "median_ms": round(1000 * statistics.median(times), 1),
                "min_ms": round(1000 * min(times), 1),
                "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
            }
        )
    device = torch.cuda.get_device_name()
    print(
        f"\nx{args.scale} of {width}x{height} -> {width * args.scale}x{height * args.scale} on {device}, torch {torch.__version__}"
    )
    print("| precision | median ms | min ms | peak GPU MiB |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['precision']} | {r['median_ms']} | {r['min_ms']} | {r['peak_gpu_mib']} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": device,
                    "torch": torch.__version__,
                    "scale": args.scale,
                    "size": [width, height],
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
