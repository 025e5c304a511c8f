"""Peak memory and time of one upscale per trunk (whole-image or streamed), each in a fresh process.

Each run loads the bundled weights, records the process's resident memory at rest, then upscales a
photograph of the given size (scikit-image's coffee, resized) through ``mdsr.upscale_picture`` and reports
the peak (VmHWM). The fitted bytes per input pixel are what ``mdsr.limits`` uses to choose and admit.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 512 1024] [--scales 2] [--precisions int8 fp32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time, torch
import numpy as np
from PIL import Image
from skimage import data
from mdsr.imaging import Picture
from mdsr.inference import upscale_picture
from mdsr.weights import load_model

size, scale, precision, trunk = {size!r}, {scale}, {precision!r}, {trunk!r}
torch.set_num_threads({threads})
photo = np.asarray(Image.fromarray(data.coffee()).resize(size, Image.LANCZOS), dtype=np.float32) / 255
pic = Picture(photo)
model = load_model()
upscale_picture(model, Picture(photo[:64, :64]), scale, precision=precision, trunk=trunk)  # int8 copy, warm
status = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
rest = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark to the present
started = time.perf_counter()
out, info = upscale_picture(model, pic, scale, precision=precision, trunk=trunk, max_output_pixels=None)
print(json.dumps({{"rest_mb": rest, "peak_mb": status("VmHWM"), "seconds": time.perf_counter() - started,
                  "trunk": info.trunk, "precision": info.precision}}))
"""


def measure(size: tuple[int, int], scale: int, precision: str, trunk: str, threads: int) -> dict:
    code = CHILD.format(size=size, scale=scale, precision=precision, trunk=trunk, threads=threads)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=7200)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1024x1024"], help="WxH of the inputs")
    parser.add_argument("--scales", type=int, nargs="+", default=[2])
    parser.add_argument("--precisions", nargs="+", default=["int8"])
    parser.add_argument("--trunks", nargs="+", default=["whole", "streamed"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    print("| input | scale | precision | trunk | seconds | rest MB | peak MB | above rest, bytes per input pixel |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for text in args.sizes:
        w, h = (int(v) for v in text.lower().split("x"))
        for scale in args.scales:
            for precision in args.precisions:
                for trunk in args.trunks:
                    r = measure((w, h), scale, precision, trunk, args.threads)
                    per_pixel = (r["peak_mb"] - r["rest_mb"]) * 2**20 / (w * h)
                    rows.append({"width": w, "height": h, "scale": scale, **r, "bytes_per_input_pixel": per_pixel})
                    print(
                        f"| {w}x{h} | x{scale} | {r['precision']} | {r['trunk']} | {r['seconds']:.1f} | "
                        f"{r['rest_mb']:.0f} | {r['peak_mb']:.0f} | {per_pixel:.0f} |",
                        flush=True,
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
