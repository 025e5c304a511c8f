"""A phone photo through the CLI with default options: `mdsr upscale photo.jpg -s 2` on a 12-megapixel JPEG
(4000x3000, made from scikit-image's public-domain photos), timed, with the peak memory of the process.

    .venv/bin/python benchmarks/bench_large_photo.py [--size 4000x3000] [--scale 2] [-- extra mdsr upscale options]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]


def phone_photo(path: Path, width: int, height: int) -> None:
    """A 4:3 photo of real content: the three bundled photos side by side, resized, saved as a JPEG."""
    strip = np.hstack([np.asarray(Image.fromarray(p).resize((600, 400))) for p in (data.astronaut(), data.coffee(), data.chelsea())])
    Image.fromarray(strip).resize((width, height), Image.LANCZOS).save(path, quality=92)


def cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    kinds = [f for f in ("amx_int8", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx_vnni") if f" {f}" in flags]
    return f"{name or platform.processor()} ({', '.join(kinds) or 'no VNNI/AMX'}), {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="more `mdsr upscale` options (after --)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    folder = Path(tempfile.mkdtemp())
    photo = folder / "photo.jpg"
    phone_photo(photo, width, height)
    command = [sys.executable, "-m", "mdsr", "upscale", str(photo), "-s", str(args.scale), "-o", str(folder / "out")]
    started = time.perf_counter()
    done = subprocess.run([*command, *args.extra], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode:
        sys.exit(f"mdsr upscale failed: {done.stderr[-2000:]}")
    out = Image.open(next((folder / "out").iterdir()))
    print(f"machine: {cpu()}")
    print(f"mdsr upscale of a {width}x{height} JPEG at x{args.scale} -> {out.size[0]}x{out.size[1]} PNG: "
          f"{seconds:.0f} s, peak RSS {peak_mb:,.0f} MB")  # fmt: skip
    print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
