"""Batch requests: several images, or zip archives of them, as the items of one request, and the zip of
outputs and the table a batch gives back.

Archives are read without trusting their directory: each member is unpacked up to what the batch may
still hold, and a member that cannot be used (encrypted, a compression this reader lacks, damaged, a zip
inside the zip, not an image) becomes an item with its problem, that is, an error row, while the other
members are still upscaled. A damaged archive is one such row. Ground truths are matched to images by
file name (without suffix).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mdsr.files import count_in_file, is_image_name
from mdsr.imaging import FORMATS
from mdsr.serving import Item, Outcome, RefusedError, Source

ZIP_DIRECTORY_ENTRY = b"PK\x01\x02"  # each member of a zip's directory starts with this signature


def collect(
    files: Sequence[str], *, truths: Sequence[str] = (), max_images: int, max_unpacked_bytes: int
) -> tuple[Item, ...]:
    """The items of a batch: each image file, each member of each zip (named by its place: "photos.zip/sub/
    b.png"); their ground truths (images or zips of them) matched by name. Refuses a batch of more than ``max_images`` files or whose zips unpack to
    more than ``max_unpacked_bytes``."""
    budget = Budget(max_unpacked_bytes, max_unpacked_bytes)
    images = [entry for path in files for entry in _entries(path, budget, max_images)]
    originals: dict[str, Source | None] = {}
    for entry in (e for path in truths for e in _entries(path, budget, max_images)):
        if not entry.problem:
            originals.setdefault(PurePosixPath(entry.name).stem.lower(), entry.source)
    if len(images) > max_images:
        raise RefusedError(f"a batch holds at most {max_images} images; this one has {len(images)}")
    return tuple(Item(e.name, e.source, originals.get(PurePosixPath(e.name).stem.lower()), e.problem) for e in images)


@dataclass
class Budget:
    """Bytes the batch's zips may still unpack to."""

    left: int
    limit: int

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise RefusedError(f"the zip files unpack to more than {self.limit:,} bytes; that is the limit")


def _entries(path: str, budget: Budget, max_images: int) -> list[Item]:
    """One file's items: itself, or each member of the zip it is."""
    name = Path(path).name
    if not zipfile.is_zipfile(path):
        if name.lower().endswith(".zip"):
            return [Item(name, None, problem=f"{name} could not be read as a zip archive (its directory is missing)")]
        return [Item(name, path)]
    if count_in_file(path, ZIP_DIRECTORY_ENTRY) > 4 * max_images + 64:  # before any zip reader parses them
        return [Item(name, None, problem=f"{name} holds far more files than a batch of {max_images} images")]
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not _is_clutter(m)]
            items = [_member(archive, m, budget, name) for m in members]
    except RefusedError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return [Item(name, None, problem=f"{name} could not be read as a zip archive ({err})")]
    return items or [Item(name, None, problem=f"{name} holds no files")]


def _is_clutter(member: zipfile.ZipInfo) -> bool:
    """Folders, and what macOS and Windows add to archives they make."""
    parts = PurePosixPath(member.filename).parts
    return member.is_dir() or "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == "Thumbs.db"


def _member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: Budget, archive_name: str) -> Item:
    name = f"{archive_name}/{member.filename}"  # its place: rows of the same file name are told apart
    if name.lower().endswith(".zip"):
        return Item(name, None, problem="a zip inside the zip: add it to the batch on its own")
    if not is_image_name(name):
        return Item(name, None, problem=f"not an image file ({FORMATS})")
    if member.flag_bits & 0x1:
        return Item(name, None, problem="the file is encrypted in the zip")
    try:
        with archive.open(member) as f:
            data = f.read(budget.left + 1)  # the directory may lie about sizes: read, bounded
    except NotImplementedError:
        return Item(
            name,
            None,
            problem=f"the zip stores it with a compression this reader lacks (method {member.compress_type})",
        )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:  # a bad CRC, a damaged stream
        return Item(name, None, problem=f"the file is damaged in the zip ({err})")
    budget.spend(len(data))
    return Item(name, io.BytesIO(data))


def zip_outputs(outcome: Outcome, archive: Path) -> Path:
    """The written outputs of a batch, stored (PNGs are compressed already) in one zip."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        for result in outcome.results:
            if result.path is not None and not result.error:
                z.write(result.path, result.path.name)
    return archive


COLUMNS = ["file", "output", "size in", "size out", "seconds", "PSNR", "SSIM", "bicubic PSNR", "error"]


def table(outcome: Outcome) -> list[list]:
    """One row per item, in ``COLUMNS``' order: the file as given (a zip member as "ARCHIVE/PATH"), and its
    output's name in the zip of outputs, distinct for every row (``files.output_names``) where one was
    written: two uploads of the same name are told apart by it."""
    rows = []
    for r in outcome.results:
        (w, h), (ow, oh) = r.sizes or ((0, 0), (0, 0))
        m = r.metrics
        rows.append(
            [
                r.name,
                r.path.name if r.path is not None and not r.error else "",
                f"{w}x{h}" if r.sizes else "",
                f"{ow}x{oh}" if r.sizes else "",
                round(r.info.seconds, 2) if r.info else None,
                m.mdsr.psnr if m else None,
                m.mdsr.ssim if m else None,
                m.bicubic.psnr if m else None,
                r.error,
            ]
        )
    return rows
