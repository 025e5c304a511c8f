"""Files of every awkward kind a user can upload, made from scikit-image's public-domain photos.

Shared by the imaging, CLI and app tests, so that each bad input is defined once.
"""

from __future__ import annotations

import functools
import io
import zlib
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


def heic_rotated(folder: Path) -> Path:
    """A HEIC photo made by pillow-heif itself, stored 64x48 with EXIF orientation 6 (shown 48x64)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(photo(), folder / "phone.heic", quality=90, exif=exif.tobytes())


def avif_rotated(folder: Path) -> Path:
    """An AVIF photo made by Pillow itself, stored 64x48 with EXIF orientation 6 (shown 48x64)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(photo(), folder / "phone.avif", quality=90, exif=exif.tobytes())


@functools.cache  # once: a new profile carries a new creation time
def colour_profile() -> bytes:
    """An RGB ICC profile made by LittleCMS (Pillow's ImageCms): carried byte for byte like a Display-P3 one."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_jpeg(folder: Path) -> Path:
    """A phone's JPEG: an RGB colour profile, a camera make and model, and orientation 6 (stored 64x48,
    shown 48x64)."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Phone maker", "Phone 15"
    return _save(photo(), folder / "phone.jpg", quality=95, exif=exif.tobytes(), icc_profile=colour_profile())


def phone_tiff(folder: Path) -> Path:
    """``phone_jpeg``'s photo and EXIF as a TIFF, with the date it was taken in the EXIF's sub-directory."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Phone maker", "Phone 15"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"  # DateTimeOriginal
    written = Image.Exif()
    written.load(exif.tobytes())  # Pillow's TIFF writer takes a sub-directory only from EXIF it has read
    return _save(photo(), folder / "phone.tiff", exif=written)


def animated_gif(folder: Path) -> Path:
    frames = [photo(), photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT), photo().convert("L").convert("RGB")]
    return _save(frames[0], folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)


def rgba_png(folder: Path) -> Path:
    image = photo().convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return _save(image, folder / "rgba.png")


def text_bomb_png(folder: Path) -> Path:
    """A small PNG whose zTXt chunk inflates to 20 MB of text."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * 20_000_000, zip=True)
    return _save(photo(), folder / "text_bomb.png", pnginfo=info)


def profile_bomb_png(folder: Path) -> Path:
    """A small PNG whose iCCP colour profile inflates to 20 MB."""
    return _save(photo(), folder / "profile_bomb.png", icc_profile=b"\0" * 20_000_000)


def huge_declared_truth(folder: Path) -> Path:
    """A small file that declares a 4096x4096 image (one bit per pixel, all zero)."""
    return _save(Image.new("1", (4096, 4096)), folder / "huge_truth.png", optimize=True)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def declared_png(path: Path, size: tuple[int, int], *, exif_after_pixels: bytes | None = None) -> Path:
    """A small grey PNG of ``size`` (all black), written a row at a time: 13000x13000 is 169 MB of pixels
    in a ~170 KB file. ``exif_after_pixels``: an eXIf chunk after the image data, where Pillow finds it
    only once it has decoded every pixel."""
    (w, h), packer = size, zlib.compressobj(9)
    row = bytes(w + 1)  # filter byte, then the row
    idat = b"".join(packer.compress(row) for _ in range(h)) + packer.flush()
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    chunks = [_png_chunk(b"IHDR", ihdr), _png_chunk(b"IDAT", idat)]
    if exif_after_pixels is not None:
        chunks.append(_png_chunk(b"eXIf", exif_after_pixels))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _png_chunk(b"IEND", b""))
    return path


def exif_png(path: Path, exif: bytes, *, deep: bool = False) -> Path:
    """The photo as a PNG (8-bit, or with ``deep`` 16-bit colour as OpenCV writes it) with an eXIf chunk of
    ``exif`` (written as given, junk or not) after its header."""
    if deep:
        rgb = np.asarray(photo(), dtype=np.uint16) * 257 + 5
        png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))[1].tobytes()
    else:
        buffer = io.BytesIO()
        photo().save(buffer, format="PNG")
        png = buffer.getvalue()
    header_end = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes and CRC
    path.write_bytes(png[:header_end] + _png_chunk(b"eXIf", exif) + png[header_end:])
    return path


def heic_declaring(folder: Path, size: tuple[int, int]) -> Path:
    """A 64x48 HEIC made by pillow-heif whose size box (ispe) is patched to declare ``size``."""
    path = heic_rotated(folder)
    data = bytearray(path.read_bytes())
    at = data.index(b"ispe") + 8  # after the box type and its version and flags
    data[at : at + 8] = size[0].to_bytes(4, "big") + size[1].to_bytes(4, "big")
    bomb = folder / f"declares_{size[0]}x{size[1]}.heic"
    bomb.write_bytes(bytes(data))
    return bomb


def _bytes(name: str, data: bytes):
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def _truncated(name: str, fmt: str, keep: float, **params):
    def make(folder: Path) -> Path:
        buffer = io.BytesIO()
        photo().save(buffer, format=fmt, **params)
        path = folder / name
        path.write_bytes(buffer.getvalue()[: int(len(buffer.getvalue()) * keep)])
        return path

    return make


def _png_with_bad_crc(folder: Path) -> Path:
    buffer = io.BytesIO()
    photo().save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[29] ^= 0xFF  # a byte of the IHDR chunk's CRC
    path = folder / "bad_crc.png"
    path.write_bytes(bytes(data))
    return path


def _thin(size: tuple[int, int], name: str):
    return lambda folder: _save(Image.new("RGB", size, (10, 200, 10)), folder / name)


CORPUS = {
    "html_named_png": _bytes("page.png", b"<!doctype html><html><body>not a picture</body></html>"),
    "svg_image": _bytes("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"/>'),
    "pdf_named_jpg": _bytes("doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"),
    "zip_named_png": _bytes("archive.png", b"PK\x03\x04" + bytes(60)),
    "random_bytes": _bytes("noise.webp", bytes(range(256)) * 8),
    "png_signature_only": _bytes("sig.png", b"\x89PNG\r\n\x1a\n"),
    "png_bad_crc": _png_with_bad_crc,
    "truncated_jpeg": _truncated("cut.jpg", "JPEG", 0.3, quality=90),
    "truncated_webp": _truncated("cut.webp", "WEBP", 0.5),
    "truncated_gif": _truncated("cut.gif", "GIF", 0.4),
    "truncated_bmp": _truncated("cut.bmp", "BMP", 0.5),
    "truncated_tiff": _truncated("cut.tiff", "TIFF", 0.5),
    "one_pixel_wide": _thin((1, 40), "one_wide.png"),
    "one_pixel_high": _thin((40, 1), "one_high.png"),
}


MAKERS = {
    "text_bomb_png": text_bomb_png,
    "profile_bomb_png": profile_bomb_png,
    "huge_declared_truth": huge_declared_truth,
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
    "heic_rotated": heic_rotated,
    "phone_jpeg": phone_jpeg,
    "phone_tiff": phone_tiff,
    "avif_rotated": avif_rotated,
    "heic_that_is_not_one": lambda folder: _bytes("fake.heic", b"\x00\x00\x00\x18ftypheic" + bytes(40))(folder),
    "rgba_png": rgba_png,
    **CORPUS,
}
