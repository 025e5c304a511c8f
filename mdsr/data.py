"""Training data: HR images from folders, MATLAB-bicubic LR made once per image and scale, and
random aligned patch batches with 8-fold dihedral augmentation.

Sampling is stateless: the batch for (seed, rank, step) is drawn from a generator seeded with exactly
those numbers, so a resumed run draws the same patches as an uninterrupted one and each distributed
rank draws different ones.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdsr.files import atomic_path, is_image_name
from mdsr.imaging import array_to_tensor, bicubic_downscale, modcrop, read_rgb8


def list_images(folders: Iterable[str | os.PathLike], *, exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """All image files under the given folders (recursively), sorted for reproducibility, less those under
    ``exclude`` (a run folder inside the data: its curve.png must never become training data)."""
    skipped = [Path(p).resolve() for p in exclude]
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        found = sorted(p for p in _walk(folder) if is_image_name(p))
        files += [p for p in found if not any(p.resolve().is_relative_to(s) for s in skipped)]
    return files


def _walk(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, through symlinked folders too (datasets are often linked in), each real
    folder once (a link to a folder above would loop)."""
    seen: set[Path] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = Path(root).resolve()
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        yield from (Path(root) / name for name in names if (Path(root) / name).is_file())


@dataclass
class PatchDataset:
    """HR images with their LR versions per scale, ready for patch sampling.

    ``hr[i]`` is a uint8 (H, W, 3) array cropped to a multiple of every scale; ``lr[s][i]`` its
    MATLAB-bicubic LR (symmetric border).
    """

    scales: tuple[int, ...]
    patch_size: int
    hr: list[np.ndarray] = field(default_factory=list)
    lr: dict[int, list[np.ndarray]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_arrays(
        cls,
        images: Iterable[tuple[str, np.ndarray]],
        *,
        scales: Sequence[int],
        patch_size: int,
        cache_dir: str | os.PathLike | None = None,
        five_crop: bool = False,
    ) -> PatchDataset:
        data = cls(scales=tuple(scales), patch_size=patch_size)
        data.lr = {s: [] for s in data.scales}
        lcm = int(np.lcm.reduce(list(data.scales)))
        if five_crop:
            images = ((f"{name}#{i}", crop) for name, array in images for i, crop in enumerate(five_crops(array)))
        for name, array in images:
            hr = modcrop(array, lcm)
            if min(hr.shape[:2]) < patch_size * max(data.scales):
                warnings.warn(
                    f"skipping {name}: {array.shape[1]}x{array.shape[0]} is smaller than one "
                    f"{patch_size * max(data.scales)} px HR patch",
                    stacklevel=2,
                )
                continue
            data.hr.append(hr)
            data.names.append(name)
            for s in data.scales:
                data.lr[s].append(_cached_downscale(hr, s, cache_dir))
        if not data.hr:
            raise ValueError("no usable training images (all were unreadable or smaller than one patch)")
        return data

    @classmethod
    def from_folders(
        cls,
        folders: Sequence[str | os.PathLike],
        *,
        scales: Sequence[int],
        patch_size: int,
        cache_dir: str | os.PathLike | None = None,
        five_crop: bool = False,
    ) -> PatchDataset:
        """The images under ``folders`` (``list_images``), as ``from_files``."""
        return cls.from_files(
            list_images(folders), scales=scales, patch_size=patch_size, cache_dir=cache_dir, five_crop=five_crop
        )

    @classmethod
    def from_files(
        cls,
        files: Sequence[Path],
        *,
        scales: Sequence[int],
        patch_size: int,
        cache_dir: str | os.PathLike | None = None,
        five_crop: bool = False,
    ) -> PatchDataset:
        """The readable ones of ``files``; the others are skipped with a warning."""

        def readable() -> Iterable[tuple[str, np.ndarray]]:
            for path in files:
                try:
                    yield str(path), read_rgb8(path)
                except (OSError, ValueError) as err:
                    warnings.warn(f"skipping {path}: {err}", stacklevel=2)

        return cls.from_arrays(
            readable(), scales=scales, patch_size=patch_size, cache_dir=cache_dir, five_crop=five_crop
        )

    @classmethod
    def from_hf_dataset(
        cls,
        dataset: Iterable[Mapping[str, Any]],
        *,
        scales: Sequence[int],
        patch_size: int,
        column: str = "hr",
        five_crop: bool = False,
    ) -> PatchDataset:
        """A Hugging Face ``datasets.Dataset`` in super-image's layout (an ``hr`` column of images
        or file paths); LR is remade with the MATLAB bicubic so every scale comes from one HR."""

        def rows() -> Iterable[tuple[str, np.ndarray]]:
            for i, row in enumerate(dataset):
                value = row[column]
                try:
                    yield f"{column}[{i}]", read_rgb8(value)
                except (OSError, ValueError) as err:
                    warnings.warn(f"skipping row {i}: {err}", stacklevel=2)

        return cls.from_arrays(rows(), scales=scales, patch_size=patch_size, five_crop=five_crop)

    def __len__(self) -> int:
        return len(self.hr)

    def sample(self, *, batch_size: int, scale: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of aligned (LR, HR) patches at ``scale``, as float tensors in [0, 1]:
        LR (B, 3, p, p) and HR (B, 3, p*s, p*s)."""
        p, s = self.patch_size, scale
        lrs, hrs = [], []
        picks = torch.randint(len(self.hr), (batch_size,), generator=generator).tolist()
        augments = torch.randint(8, (batch_size,), generator=generator).tolist()
        for i, aug in zip(picks, augments, strict=True):
            lr = self.lr[s][i]
            y = int(torch.randint(lr.shape[0] - p + 1, (1,), generator=generator))
            x = int(torch.randint(lr.shape[1] - p + 1, (1,), generator=generator))
            lrs.append(dihedral(lr[y : y + p, x : x + p], aug))
            hrs.append(dihedral(self.hr[i][y * s : (y + p) * s, x * s : (x + p) * s], aug))
        return _to_batch(lrs), _to_batch(hrs)


def five_crops(image: np.ndarray) -> list[np.ndarray]:
    """super-image's "five crop" pre-augmentation: the four corners and the centre, each half the
    image's height and width (torchvision's FiveCrop), in place of the whole image."""
    h, w = image.shape[:2]
    ch, cw = h // 2, w // 2
    top, left = (h - ch) // 2, (w - cw) // 2
    return [
        image[:ch, :cw],
        image[:ch, w - cw :],
        image[h - ch :, :cw],
        image[h - ch :, w - cw :],
        image[top : top + ch, left : left + cw],
    ]


def dihedral(patch: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of an (H, W, C) patch: k in 0..7 (bit 2 = transpose, then k%4 quarter turns)."""
    if k >= 4:
        patch = patch.transpose(1, 0, 2)
    return np.rot90(patch, k % 4)


def _to_batch(patches: list[np.ndarray]) -> torch.Tensor:
    return array_to_tensor(np.stack(patches))  # (B, H, W, 3) uint8 -> (B, 3, H, W) in [0, 1]


def _cached_downscale(hr: np.ndarray, scale: int, cache_dir: str | os.PathLike | None) -> np.ndarray:
    if cache_dir is None:
        return bicubic_downscale(hr, scale)
    key = hashlib.sha256(hr.tobytes() + repr(hr.shape).encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{key}_x{scale}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a damaged cache entry is simply remade
    lr = bicubic_downscale(hr, scale)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, lr)
    return lr


def warm_lr_cache(
    files: Sequence[str | os.PathLike], *, scales: Sequence[int], cache_dir: str | os.PathLike, workers: int
) -> None:
    """Make the LR cache of ``files`` in ``workers`` processes, so that loading the dataset afterwards
    only reads it (on a machine with many cores this turns ~40 s of bicubic into a few)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    lcm = int(np.lcm.reduce(list(scales)))
    jobs = [(str(f), tuple(scales), lcm, str(cache_dir)) for f in files]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_warm_one, jobs, chunksize=4))


def _warm_one(job: tuple[str, tuple[int, ...], int, str]) -> None:
    path, scales, lcm, cache_dir = job
    try:
        hr = modcrop(read_rgb8(path), lcm)
    except (OSError, ValueError):
        return  # the dataset itself reports unreadable files
    for s in scales:
        _cached_downscale(hr, s, cache_dir)


def step_generator(*, seed: int, rank: int, step: int) -> torch.Generator:
    """The generator for one training step: a pure function of (seed, rank, step)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63)
