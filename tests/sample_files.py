"""Files of every awkward kind a user can upload, made from scikit-image's public-domain photos.

Shared by the imaging, CLI and app tests, so that each bad input is defined once.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A crop of scikit-image's coffee photo (CC0)."""
    return Image.fromarray(skdata.coffee()).crop((200, 100, 200 + size[0], 100 + size[1]))


def write(folder: Path, name: str) -> Path:
    """Write the sample called ``name`` into ``folder`` and return its path."""
    return MAKERS[name](Path(folder))


def _save(image: Image.Image, path: Path, **params) -> Path:
    image.save(path, **params)
    return path


def not_an_image(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("this is a text file with an image suffix\n")
    return path


def empty_file(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def truncated_png(folder: Path) -> Path:
    buffer = io.BytesIO()
    photo().save(buffer, format="PNG")
    path = folder / "truncated.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def one_pixel(folder: Path) -> Path:
    return _save(Image.new("RGB", (1, 1), (200, 10, 10)), folder / "one_pixel.png")


def decompression_bomb(folder: Path) -> Path:
    """A tiny file that declares 30000x30000 pixels (900 megapixels)."""
    return _save(Image.new("1", (30000, 30000)), folder / "bomb.png", optimize=True)


def cmyk_jpeg(folder: Path) -> Path:
    return _save(photo().convert("CMYK"), folder / "cmyk.jpg", quality=95)


def palette_transparent_png(folder: Path) -> Path:
    image = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return _save(image, folder / "palette.png", transparency=0)


def grey_alpha_png(folder: Path) -> Path:
    grey = photo().convert("L")
    alpha = Image.linear_gradient("L").resize(grey.size)
    return _save(Image.merge("LA", (grey, alpha)), folder / "grey_alpha.png")


def grey16_png(folder: Path) -> Path:
    grey = np.asarray(photo().convert("L"), dtype=np.uint16) * 257 + 3  # uses the low byte too
    return _save(Image.fromarray(grey), folder / "grey16.png")


def rgb16_png(folder: Path) -> Path:
    rgb = np.asarray(photo(), dtype=np.uint16) * 257 + 5
    path = folder / "rgb16.png"
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def exif_rotated_jpeg(folder: Path) -> Path:
    """Stored 64 wide and 48 high, with EXIF orientation 6 (display rotated 90 degrees: 48x64)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(photo(), folder / "rotated.jpg", exif=exif, quality=95)


def animated_gif(folder: Path) -> Path:
    frames = [photo(), photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT), photo().convert("L").convert("RGB")]
    return _save(frames[0], folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)


def rgba_png(folder: Path) -> Path:
    image = photo().convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return _save(image, folder / "rgba.png")


MAKERS = {
    "not_an_image": not_an_image,
    "empty_file": empty_file,
    "truncated_png": truncated_png,
    "one_pixel": one_pixel,
    "decompression_bomb": decompression_bomb,
    "cmyk_jpeg": cmyk_jpeg,
    "palette_transparent_png": palette_transparent_png,
    "grey_alpha_png": grey_alpha_png,
    "grey16_png": grey16_png,
    "rgb16_png": rgb16_png,
    "exif_rotated_jpeg": exif_rotated_jpeg,
    "animated_gif": animated_gif,
    "rgba_png": rgba_png,
}
