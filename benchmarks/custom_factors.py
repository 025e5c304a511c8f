"""Factors between and beyond the trained scales, against bicubic: each Set5 image (and the bundled photos)
is downscaled by the factor with MATLAB's bicubic and brought back to its own size, by the network's route
(next trained scale up, or two stages, then MATLAB's bicubic down) and by bicubic alone; PSNR/SSIM on Y,
shave = the factor rounded up, fp32.

    .venv/bin/python benchmarks/custom_factors.py [--factors 1.5 2.5 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdsr import serving  # noqa: E402
from mdsr.inference import PreparedModels  # noqa: E402
from mdsr.sizing import stages_for  # noqa: E402
from mdsr.weights import LoadedWeights, load_model  # noqa: E402

SET5 = ROOT.parent / "shared" / "data" / "benchmark" / "Set5" / "HR"


def own_truth_scores(model, path: Path, factor: float):
    """The demo's comparison of an image as its own ground truth at ``factor`` (fp32): its metrics."""
    request = serving.Request((serving.Item(path.name, str(path)),), serving.parse_target(factor), precision="fp32",
                              truth="self")  # fmt: skip
    admitted = serving.admit(request, serving.CLI_LIMITS, resident=0)
    weights = {s: LoadedWeights(model, "bundled") for s in admitted.scales}
    return serving.run(admitted, weights=weights, prepared=PreparedModels()).results[0].metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.5, 2.5, 6.0])
    args = parser.parse_args()
    model = load_model()
    sets = {"Set5": sorted(SET5.glob("*.png")) if SET5.is_dir() else []}
    sets["photos"] = [ROOT / "examples" / f"{n}.png" for n in ("astronaut", "coffee", "chelsea")]
    print("| set | factor | network route | bicubic PSNR / SSIM | MDSR-BAM PSNR / SSIM | gain (dB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, files in sets.items():
        if not files:
            continue
        for factor in args.factors:
            rows = [own_truth_scores(model, f, factor) for f in files]
            mean = {k: statistics.mean(getattr(getattr(r, k.split(".")[0]), k.split(".")[1]) for r in rows)
                    for k in ("bicubic.psnr", "bicubic.ssim", "mdsr.psnr", "mdsr.ssim")}  # fmt: skip
            route = " then ".join(f"{s}x" for s in stages_for(factor)) + ", bicubic down"
            print(
                f"| {name} | {factor:g} | {route} | {mean['bicubic.psnr']:.2f} / {mean['bicubic.ssim']:.4f} | "
                f"{mean['mdsr.psnr']:.2f} / {mean['mdsr.ssim']:.4f} | {mean['mdsr.psnr'] - mean['bicubic.psnr']:+.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
