"""Round-trip time of the demo's `/upscale` endpoint through gradio_client, served in-process.

.venv/bin/python benchmarks/bench_api.py [--size 1200x900] [--scale 2] [--runs 5] [--precision fp32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mdsr.inference import Precision  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1200x900", help="WxH of the photo (a square side also works)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", choices=get_args(Precision), default="auto")
    args = parser.parse_args()

    from gradio_client import Client, handle_file
    from PIL import Image
    from skimage import data

    import app

    width, height = (int(v) for v in (args.size.split("x") if "x" in args.size else (args.size, args.size)))
    image = Path(tempfile.mkdtemp()) / "input.png"
    Image.fromarray(data.astronaut()).resize((width, height), Image.LANCZOS).save(image)
    # The app in this process on 127.0.0.1 (Gradio takes the first free port from 7860); not the tests' helper,
    # which pins torch to 2 threads.
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(image)), args.scale, None, args.precision, api_name="/upscale")  # warm-up
        times, compute = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            _, report = client.predict(handle_file(str(image)), args.scale, None, args.precision, api_name="/upscale")
            times.append(time.perf_counter() - start)
            compute.append(report["seconds"])
    finally:
        app.demo.close()
    from mdsr.inference import host_cpu

    print(f"machine: {bench_cpu()}, {host_cpu()}")
    print(
        f"/upscale x{args.scale} of {width}x{height}: round trip median {statistics.median(times):.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f}, {args.runs} runs); model time median "
        f"{statistics.median(compute):.2f} s; precision {report['precision']}, {report['trunk']} trunk"
    )


def bench_cpu() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")


if __name__ == "__main__":
    main()
