"""Does a faster precision hold the "no visible change" bar? PSNR of each precision against fp32 on the same
images: Set5, Set14 and BSD100 at x2, x3 and x4 (standard protocol), the bundled example photos, and the
held-out validation images where given (what the int8 path's choices were checked on).

The bar (docs/performance.md): at most 0.01 dB of mean change on each test set at each scale, at most
0.1 dB on any one image. "auto" may pick only a path that holds it.

    .venv/bin/python benchmarks/quality_bar.py [--precisions int8 bf16] [--held-out .gpu_data/val] [--json docs/quality_bar.json]

``--openvino int8 int8+bf16`` (in the benchmarks' own environment, ``.bench``: ``bench_inference.py``'s docstring)
checks OpenVINO's variants of the same network as well (``bench_inference.openvino_runner``: the HR stage folded,
NNCF int8 on the residual blocks), whole image, on the same edge-padded inputs as this package's paths.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdsr.evaluate import BAR_IMAGE_DB, BAR_MEAN_DB, Result, bar_checks, evaluate, load_benchmark  # noqa: E402
from mdsr.folding import fold_upsamplers  # noqa: E402
from mdsr.imaging import array_to_tensor, tensor_to_array, to_uint  # noqa: E402
from mdsr.inference import EDGE_PADDING, bf16_available, host_cpu  # noqa: E402
from mdsr.metrics import psnr  # noqa: E402
from mdsr.quantize import int8_available, int8_weight_bits  # noqa: E402
from mdsr.weights import load_model  # noqa: E402

BENCHMARK = ROOT.parent / "shared" / "data" / "benchmark"


def photo_folder() -> Path:
    """The bundled example photos laid out as a benchmark (HR/; LR made with the MATLAB bicubic)."""
    folder = Path(tempfile.mkdtemp()) / "photos"
    (folder / "HR").mkdir(parents=True)
    for name in ("astronaut", "coffee", "chelsea"):
        shutil.copy(ROOT / "examples" / f"{name}.png", folder / "HR" / f"{name}.png")
    return folder


def run_openvino(model, folders: list[Path], variant: str) -> list[Result]:
    """The standard protocol's scores of OpenVINO's ``variant`` of ``model``, converted once per scale."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_inference import openvino_runner

    results, folded = [], fold_upsamplers(model)  # the network as this package runs it, folded once
    for scale in (2, 3, 4):
        network = openvino_runner(folded, scale, variant)
        if network is None:
            sys.exit("openvino (and, for int8, nncf) must be installed: see bench_inference.py")
        for folder in folders:
            rows = []
            for pair in load_benchmark(folder, scale):
                padded = functional.pad(array_to_tensor(pair.lr), (EDGE_PADDING,) * 4, mode="replicate")
                crop = EDGE_PADDING * scale
                out = to_uint(tensor_to_array(network(padded)[:, :, crop:-crop, crop:-crop].clamp(0, 1)))
                rows.append({"name": pair.name, "psnr": psnr(out, pair.hr, shave=scale), "ssim": 0.0})
            mean = float(np.mean([r["psnr"] for r in rows]))
            # The bar reads PSNR only: SSIM and bicubic are not computed here (0.0).
            results.append(Result(Path(folder).name, scale, len(rows), mean, 0.0, 0.0, 0.0, "", "standard", rows))
    order = [Path(f).name for f in folders]
    return sorted(results, key=lambda r: (order.index(r.dataset), r.scale))  # as evaluate orders them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precisions", nargs="*", default=["int8", "bf16"])
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--held-out", default=None, help="a folder with HR/: the validation images")
    parser.add_argument("--openvino", nargs="*", default=[], choices=["f32", "bf16", "int8", "int8+bf16"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model = load_model(args.weights)
    folders = [BENCHMARK / name for name in args.sets if (BENCHMARK / name).is_dir()] + [photo_folder()]
    if args.held_out:
        folders.append(Path(args.held_out))
    runnable = {"int8": int8_available(), "bf16": bf16_available()}
    precisions = [p for p in args.precisions if runnable.get(p, True)]
    print(f"CPU: {host_cpu()}; int8 weights: {int8_weight_bits()} bits; precisions: {', '.join(precisions)}; "
          f"sets: {', '.join(f.name for f in folders)}")  # fmt: skip

    def run(precision: str):
        return evaluate(model, folders, [2, 3, 4], precision=precision, show_progress=False)

    reference = run("fp32")
    report = {}
    print(f"\nPSNR change against fp32 (dB): mean / worst image; the bar: |mean| <= {BAR_MEAN_DB} on each test set, "
          f"|worst| <= {BAR_IMAGE_DB}")  # fmt: skip
    print("| precision | set | scale | images | mean change | worst change (image) | holds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    candidates = {p: partial(run, p) for p in precisions}
    candidates |= {f"openvino {v}": partial(run_openvino, model, folders, v) for v in args.openvino}
    for precision, results in candidates.items():
        checks = bar_checks(reference, results())
        report[precision] = [asdict(c) | {"holds": c.holds} for c in checks]
        for c in checks:
            print(
                f"| {precision} | {c.dataset} | x{c.scale} | {c.images} | {c.mean_change:+.4f} | "
                f"{c.worst_change:+.4f} ({c.worst_image}) | {'yes' if c.holds else 'NO'} |",
                flush=True,
            )
        print(f"| **{precision}** | | | | | | **{'holds' if all(c.holds for c in checks) else 'misses'} the bar** |")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cpu": str(host_cpu()), "int8_weight_bits": int8_weight_bits(), "checks": report}, indent=2)
        )


if __name__ == "__main__":
    main()
