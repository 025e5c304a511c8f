"""Files the package writes and reads by name: atomic writes, output names, the image suffixes it opens.

Every file written (weights, checkpoints, curves, LR caches, upscaled images) goes through
``atomic_path``: a temporary file beside the target, renamed over it once complete, so an interrupted
run leaves the old file or the new one, never half of one. ``output_names`` is the one naming rule of
the CLI and the demo's batch: every input gets its own output, whatever names and formats they share.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path, PurePath

# What folders and zips are searched for (HEIC/HEIF read where pillow-heif is installed: mdsr.imaging).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif")


def is_image_name(name: str | PurePath) -> bool:
    return PurePath(name).suffix.lower() in IMAGE_SUFFIXES


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; on success it replaces ``path`` (fsynced first,
    with the mode a new file gets under the umask, 0644 under 022), on an exception it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o666 & ~current_umask()  # what open() would have given: mkstemp makes the file 0600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PROC_STATUS = "/proc/self/status"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (/proc/self/status, since
    4.7); elsewhere set and restored at once, as ``os.umask`` only reads it that way."""
    with suppress(OSError, ValueError), open(PROC_STATUS, "rb") as status:
        for line in status:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)  # briefly stricter, never looser, for a file another thread creates meanwhile
    os.umask(mask)
    return mask


def output_names(inputs: Sequence[str | PurePath], tag: str, extension: str, *, separator: str = "_") -> list[str]:
    """An output file name for each input (a path or a zip member's name), distinct by construction:
    ``NAME_TAG.EXT`` (``separator`` between name and tag: "" gives the benchmarks' ``NAMEx2.png``); inputs whose names differ only in format keep it (``rgb_bmp_TAG.EXT``); any name
    still taken (the same name in two folders, or an input called ``rgb_bmp.png`` beside ``rgb.bmp``)
    gets its folder's name in front (a zip's, without .zip, for a member at its top), then a number."""
    paths = [PurePath(p) for p in inputs]
    stems: dict[str, int] = {}
    for p in paths:
        stems[p.stem.lower()] = stems.get(p.stem.lower(), 0) + 1
    taken: set[str] = set()
    names = []
    for p in paths:
        stem = p.stem if stems[p.stem.lower()] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        folder = p.parent.name[:-4] if p.parent.name.lower().endswith(".zip") else p.parent.name  # a zip's member
        candidates = [stem] + ([f"{folder}_{stem}"] if folder else [])
        candidates += [f"{stem}_{n}" for n in range(2, len(paths) + 2)]
        name = next(
            f"{c}{separator}{tag}{extension}"
            for c in candidates
            if f"{c}{separator}{tag}{extension}".lower() not in taken
        )
        taken.add(name.lower())
        names.append(name)
    return names


def count_in_file(path: str | os.PathLike, needle: bytes, chunk: int = 1 << 20) -> int:
    """Occurrences of ``needle`` in a file, read in chunks that overlap by its length less one byte (an
    upper bound on a zip's directory entries, found before any zip reader parses and keeps them)."""
    count, tail = 0, b""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            data = tail + block
            count += data.count(needle)
            tail = data[-(len(needle) - 1) :]  # too short to hold a match, so none is counted twice
    return count
