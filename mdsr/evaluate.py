"""Benchmark evaluation: the PSNR/SSIM table of the literature (and of the super-image model card).

Protocols:
- ``standard`` (default), the literature's: HR cropped to a multiple of s, LR from the benchmark's
  ``LR_bicubic*`` files when present (else made with the MATLAB bicubic, symmetric border), output
  rounded to uint8, PSNR/SSIM on Y (BT.601) with ``shave = s`` (see ``mdsr.metrics``).
- ``super-image``, how the ``eugenesiow/mdsr-bam`` card's table was measured: LR by PIL bicubic from
  the uncropped HR; HR bicubic-resized (PIL) to LR size times s when not divisible; Y with
  super-image's coefficient 64.738 for R (a typo for 65.481); shave = s; the prediction clamped but
  not rounded; SSIM Gaussian 11x11, sigma 1.5. Its numbers are not comparable with the standard ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from mdsr.files import atomic_path
from mdsr.imaging import (
    array_to_tensor,
    bicubic_downscale,
    bicubic_upscale,
    modcrop,
    read_rgb8,
    tensor_to_array,
    to_uint,
)
from mdsr.inference import EDGE_PADDING, Mode, Precision, PreparedModels, resolve_precision, super_resolve
from mdsr.metrics import SSIM_WINDOW, psnr, ssim
from mdsr.model import MDSR

Protocol = Literal["standard", "super-image"]
# super-image's convert_rgb_to_y: 16 + (64.738 R + 129.057 G + 25.064 B) / 256 on 0..255 values.
SUPER_IMAGE_Y = np.array([64.738, 129.057, 25.064]) / 256.0


@dataclass
class Pair:
    name: str
    lr: np.ndarray  # uint8 (h, w, 3)
    hr: np.ndarray  # uint8 (h*s, w*s, 3)


def check_benchmark(folder: str | os.PathLike, scales: tuple[int, ...] = (), *, option: str = "") -> None:
    """Before any work: ``folder`` has an HR/ folder whose every file (``load_benchmark`` reads them all)
    opens as an image, or the first that does not is named with the reason (read from its header only);
    with ``scales``, each is also large enough to measure at every scale (``metrics`` shaves ``s`` pixels
    off each border of the image cropped to a multiple of ``s``, and SSIM's window needs ``SSIM_WINDOW``
    pixels a side of what is left). ``option``: the option that named
    ``folder``, as the sentence shows it."""
    from mdsr.imaging import ImageError, image_size

    named = f"{option} {folder}" if option else str(folder)
    hr_dir = Path(folder) / "HR"
    if not hr_dir.is_dir():
        raise FileNotFoundError(f"{named} has no HR/ folder of ground-truth images")
    for path in sorted(p for p in hr_dir.iterdir() if p.is_file()):
        size = image_size(path)
        if size is None:
            try:
                read_rgb8(path)  # fails at the header, saying why
            except (ImageError, OSError) as err:
                raise ImageError(f"{path}: {err}") from None
            continue
        w, h = size
        if small := [s for s in scales if min(w // s, h // s) * s - 2 * s < SSIM_WINDOW]:
            s = max(small)
            need = -(-(SSIM_WINDOW + 2 * s) // s) * s  # the smallest multiple of s that leaves the window
            raise ValueError(
                f"{path}: a {w}x{h} image is too small to measure at x{s}: SSIM needs at least {need} pixels a side "
                f"({SSIM_WINDOW} once cropped to a multiple of {s} and {s} shaved off each border)"
            )


def benchmark_files(folder: str | os.PathLike) -> set[Path]:
    """Every file in ``folder`` and below, resolved: what an evaluation of it reads, and must not replace."""
    return {p.resolve() for p in Path(folder).rglob("*") if p.is_file()}


def load_benchmark(folder: str | os.PathLike, scale: int) -> list[Pair]:
    """The (LR, HR) pairs of a benchmark folder at one scale, standard protocol."""
    folder = Path(folder)
    hr_dir = folder / "HR"
    if not hr_dir.is_dir():
        raise FileNotFoundError(f"{folder} has no HR/ folder of ground-truth images")
    lr_dirs = [folder / "LR_bicubic_symmetric" / f"X{scale}", folder / "LR_bicubic" / f"X{scale}"]
    pairs = []
    for path in sorted(p for p in hr_dir.iterdir() if p.is_file()):
        hr = modcrop(read_rgb8(path), scale)
        lr_file = next(
            (d / f"{path.stem}x{scale}.png" for d in lr_dirs if (d / f"{path.stem}x{scale}.png").exists()), None
        )
        lr = read_rgb8(lr_file) if lr_file else bicubic_downscale(hr, scale)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise ValueError(f"{lr_file}: LR size does not match HR {path.name} at x{scale}")
        pairs.append(Pair(path.stem, lr, hr))
    if not pairs:
        raise FileNotFoundError(f"{hr_dir} holds no images")
    return pairs


def load_benchmark_super_image(folder: str | os.PathLike, scale: int) -> list[Pair]:
    """Pairs as super-image's evaluation saw them: LR by PIL bicubic from the uncropped HR, and HR
    resized (PIL bicubic) to LR size times s where it was not divisible."""
    pairs = []
    for path in sorted(p for p in (Path(folder) / "HR").iterdir() if p.is_file()):
        hr = Image.fromarray(read_rgb8(path))
        lr = hr.resize((hr.width // scale, hr.height // scale), Image.Resampling.BICUBIC)
        if hr.size != (lr.width * scale, lr.height * scale):
            hr = hr.resize((lr.width * scale, lr.height * scale), Image.Resampling.BICUBIC)
        pairs.append(Pair(path.stem, np.asarray(lr), np.asarray(hr)))
    return pairs


def validate(model: MDSR, pairs: list[Pair], scale: int, *, precision: Precision = "fp32") -> float:
    """Mean standard-protocol PSNR of ``model`` over ``pairs``."""
    model, precision = prepare(model, precision)
    scores = [
        psnr(
            to_uint(tensor_to_array(super_resolve(model, array_to_tensor(p.lr), scale, precision=precision))),
            p.hr,
            shave=scale,
        )
        for p in pairs
    ]
    return float(np.mean(scores))


def prepare(model: MDSR, precision: Precision) -> tuple[MDSR, Mode]:
    """``model`` ready for ``precision``, once for all images (an int8 copy is made here, not per image)."""
    mode = resolve_precision(precision, next(model.parameters()).device)
    return PreparedModels().get(model, mode), mode


def _super_image_y(img: np.ndarray) -> np.ndarray:
    return 16.0 + img.astype(np.float64) @ SUPER_IMAGE_Y


def super_image_metrics(output: np.ndarray, truth: np.ndarray, scale: int) -> tuple[float, float]:
    """PSNR/SSIM as super-image computes them: float output (not rounded), its Y, shave = scale."""
    a = _super_image_y(output)[scale:-scale, scale:-scale]
    b = _super_image_y(truth)[scale:-scale, scale:-scale]
    mse = float(np.mean((a - b) ** 2))
    value = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    s = structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return value, float(s)


@dataclass
class Result:
    dataset: str
    scale: int
    images: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    weights: str
    protocol: str
    per_image: list[dict] = field(default_factory=list)


SCORES = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")


def score_pair(
    model: MDSR, pair: Pair, scale: int, *, protocol: Protocol, precision: Mode, self_ensemble: bool
) -> dict:
    """One image's row: its name, and MDSR-BAM's and bicubic's PSNR/SSIM as ``protocol`` measures them."""
    sr = super_resolve(
        model,
        array_to_tensor(pair.lr),
        scale,
        precision=precision,
        self_ensemble=self_ensemble,
        edge_padding=EDGE_PADDING if protocol == "standard" else 0,  # super-image ran the bare network
    )
    if protocol == "standard":
        out, bic = to_uint(tensor_to_array(sr)), bicubic_upscale(pair.lr, scale)
        scores = (
            psnr(out, pair.hr, shave=scale),
            ssim(out, pair.hr, shave=scale),
            psnr(bic, pair.hr, shave=scale),
            ssim(bic, pair.hr, shave=scale),
        )
    else:
        out = tensor_to_array(sr) * 255.0
        lr_img = Image.fromarray(pair.lr)
        bic = np.asarray(lr_img.resize((lr_img.width * scale, lr_img.height * scale), Image.Resampling.BICUBIC))
        scores = super_image_metrics(out, pair.hr, scale) + super_image_metrics(bic, pair.hr, scale)
    return {"name": pair.name, **dict(zip(SCORES, scores, strict=True))}


def evaluate(
    model: MDSR,
    folders: list[str | os.PathLike],
    scales: list[int],
    *,
    protocol: Protocol = "standard",
    self_ensemble: bool = False,
    precision: Precision = "fp32",
    weights: str = "",
    show_progress: bool = True,
) -> list[Result]:
    """One ``Result`` per dataset and scale (see the module docstring for the protocols)."""
    if protocol not in ("standard", "super-image"):
        raise ValueError(f"protocol must be 'standard' or 'super-image', got {protocol!r}")
    model, precision = prepare(model, precision)
    load = load_benchmark if protocol == "standard" else load_benchmark_super_image
    results = []
    for folder in folders:
        for scale in scales:
            model.check_scale(scale)
            pairs = load(folder, scale)
            if show_progress:
                from tqdm import tqdm

                pairs = tqdm(pairs, desc=f"{Path(folder).name} x{scale}", unit="img", leave=False)
            rows = [
                score_pair(model, pair, scale, protocol=protocol, precision=precision, self_ensemble=self_ensemble)
                for pair in pairs
            ]
            mean = {k: float(np.mean([r[k] for r in rows])) for k in SCORES}
            dataset = Path(folder).name
            results.append(
                Result(
                    dataset=dataset,
                    scale=scale,
                    images=len(rows),
                    weights=weights,
                    protocol=protocol,
                    per_image=rows,
                    **mean,
                )  # fmt: skip
            )
    return results


def markdown_table(results: list[Result]) -> str:
    """The model card's table shape: dataset, scale, bicubic PSNR/SSIM, model PSNR/SSIM."""
    lines = ["| Dataset | Scale | Bicubic PSNR / SSIM | MDSR-BAM PSNR / SSIM |", "| --- | --- | --- | --- |"]
    for r in results:
        lines.append(
            f"| {r.dataset} | x{r.scale} | {r.bicubic_psnr:.2f} / {r.bicubic_ssim:.4f} | {r.psnr:.2f} / {r.ssim:.4f} |"
        )
    return "\n".join(lines)


def write_json(results: list[Result], path: str | os.PathLike) -> None:
    """The results, per-image scores included, as a JSON list; written whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps([asdict(r) for r in results], indent=2))


# --------------------------------------------------------------------------------------------------
# The "no visible change" bar a faster precision must hold against fp32 (docs/performance.md)
# --------------------------------------------------------------------------------------------------

BAR_MEAN_DB = 0.01  # |mean PSNR change| over each test set at each scale
BAR_IMAGE_DB = 0.1  # |PSNR change| on any one image, test sets and bundled photos alike
BAR_SETS = ("Set5", "Set14", "BSD100")


@dataclass(frozen=True)
class BarCheck:
    """How far a precision moved one dataset's PSNR at one scale, against fp32 on the same images."""

    dataset: str
    scale: int
    images: int
    mean_change: float
    worst_change: float
    worst_image: str

    @property
    def holds(self) -> bool:
        """Within the bar: the mean applies to the test sets, the per-image bound to every set."""
        mean_ok = self.dataset not in BAR_SETS or abs(self.mean_change) <= BAR_MEAN_DB
        return mean_ok and abs(self.worst_change) <= BAR_IMAGE_DB


def bar_checks(reference: list[Result], candidate: list[Result]) -> list[BarCheck]:
    """Per dataset and scale, the candidate's PSNR change against the reference (same images, same order)."""
    checks = []
    by_key = {(r.dataset, r.scale): r for r in reference}
    for result in candidate:
        ref = by_key[(result.dataset, result.scale)]
        changes = [(c["psnr"] - r["psnr"], c["name"]) for c, r in zip(result.per_image, ref.per_image, strict=True)]
        worst = max(changes, key=lambda change: abs(change[0]))
        mean = sum(change for change, _ in changes) / len(changes)
        checks.append(BarCheck(result.dataset, result.scale, len(changes), mean, worst[0], worst[1]))
    return checks
