"""Batch upscaling: several images, or zip archives of them, in; one zip of full-resolution PNGs and a table
out, with PSNR/SSIM wherever a ground truth of the same name is given.

Everything is bounded before any pixel is decoded: the number of images, the bytes a zip unpacks to (read
up to the limit, whatever its directory claims), each image's pixels, and the total work (output pixels of
all images together), each with a sentence that names the limit. A file that cannot be used gets its own
error row; the others are still upscaled.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mdsr.compare import fit_ground_truth, score
from mdsr.files import IMAGE_SUFFIXES
from mdsr.imaging import ImageError, bicubic_upscale, image_size, read_image, save_picture
from mdsr.inference import Precision, upscale_picture
from mdsr.model import MDSR

Source = str | io.BytesIO  # a file's path, or the bytes of a zip member


@dataclass(frozen=True)
class BatchRow:
    name: str
    size_in: str = ""
    size_out: str = ""
    seconds: float | None = None
    psnr: float | None = None  # against the ground truth of the same name, when one was given
    ssim: float | None = None
    bicubic_psnr: float | None = None
    error: str = ""


def collect(paths: Sequence[str], *, max_images: int, max_unpacked_bytes: int) -> list[tuple[str, Source]]:
    """(name, source) of every image among ``paths``, zip archives unpacked in memory, names made unique."""
    items: list[tuple[str, Source]] = []
    unpacked = 0
    for path in paths:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    if member.is_dir() or Path(member.filename).suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    with archive.open(member) as f:
                        data = f.read(max_unpacked_bytes - unpacked + 1)  # the directory may lie: read, bounded
                    unpacked += len(data)
                    if unpacked > max_unpacked_bytes:
                        raise ImageError(
                            f"the zip unpacks to more than {max_unpacked_bytes:,} bytes; that is the limit"
                        )
                    items.append((Path(member.filename).name, io.BytesIO(data)))
        else:
            items.append((Path(path).name, path))
        if len(items) > max_images:
            raise ImageError(f"a batch holds at most {max_images} images; this one has more")
    seen: dict[str, int] = {}
    unique = []
    for name, source in items:
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{Path(name).stem}_{seen[name]}{Path(name).suffix}", source))
    return unique


def check_batch_work(items: Sequence[tuple[str, Source]], scale: int, max_work_pixels: int) -> None:
    """The whole batch's output pixels, from the files' headers, must stay within ``max_work_pixels``."""
    total = 0
    for _, source in items:
        size = image_size(source)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        if size is not None:  # unreadable files fail on their own row
            total += size[0] * size[1] * scale * scale
    if total > max_work_pixels:
        raise ImageError(
            f"this batch is {total:,} output pixels at x{scale}; the limit per request is {max_work_pixels:,}"
        )


def upscale_batch(
    model: MDSR,
    items: Sequence[tuple[str, Source]],
    scale: int,
    out_dir: Path,
    *,
    truths: dict[str, Source] | None = None,
    precision: Precision = "auto",
    max_input_pixels: int,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[BatchRow], Path]:
    """Upscale every item into ``out_dir`` as ``NAME_xS.png`` and zip them; ``truths`` maps a file's stem
    to its ground truth. Returns the table and the zip's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, written = [], []
    for n, (name, source) in enumerate(items):
        if progress is not None:
            progress(n, len(items), name)
        try:
            pic = read_image(source, max_pixels=max_input_pixels)
            started = time.perf_counter()
            result, _ = upscale_picture(model, pic, scale, precision=precision)
            seconds = time.perf_counter() - started
            target = out_dir / f"{Path(name).stem}_x{scale}.png"
            save_picture(result, target)
            written.append(target)
            row = BatchRow(
                name, f"{pic.size[0]}x{pic.size[1]}", f"{result.size[0]}x{result.size[1]}", round(seconds, 2)
            )
            truth_source = (truths or {}).get(Path(name).stem)
            if truth_source is not None:
                largest = (pic.size[0] + 1) * scale * (pic.size[1] + 1) * scale  # fit_ground_truth checks exactly
                truth = fit_ground_truth(pic, read_image(truth_source, max_pixels=largest), scale)
                ours, bicubic = score(result, truth, scale), score(bicubic_upscale(pic, scale), truth, scale)
                row = replace(row, psnr=ours.psnr, ssim=ours.ssim, bicubic_psnr=bicubic.psnr)
        except (ImageError, ValueError, OSError) as err:
            row = BatchRow(name, error=str(err))
        rows.append(row)
    archive = out_dir / f"mdsr_batch_x{scale}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for path in written:
            z.write(path, path.name)
    return rows, archive
