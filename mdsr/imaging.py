"""The image layer: MATLAB-exact bicubic, decoding any user image, and the one way to integers and tensors.

Resizing follows MATLAB's ``imresize(img, scale, 'bicubic')`` exactly, as the super-resolution
literature's LR images were made with it (and as BasicSR's ``matlab_functions.imresize`` does):
cubic kernel with a = -0.5; when shrinking, antialiasing stretches the kernel by 1/scale (support
4/scale input pixels) and each output pixel's weights are renormalised to sum to 1; output pixel i
(1-based) is centred at input coordinate i/scale + 0.5*(1 - 1/scale); rows (height) are resized
before columns (width); an integer image is rounded half away from zero and clipped to its type's
range after each of the two passes, a float image is not rounded. The border is ``"symmetric"``
(modern MATLAB mirrors the image; the EDSR/DIV2K convention, default) or ``"replicate"`` (older
MATLAB clamps indices; the SelfExSR benchmark pack). Contributions are accumulated in index order in
float64, as MATLAB does, so that ties round the same way and every LR file is reproduced bit for bit.

Images travel as ``Picture``s: float32 RGB in [0, 1] plus alpha, greyness and bit depth, decoded by
the one decoder (``read_image``/``picture_from_pil``: any mode, EXIF orientation, 16 bits, clear errors).
``to_uint`` is the one rounding of floats to 8 or 16 bits, ``rgb8`` the one 8-bit RGB view (metrics,
training data, the bicubic baseline), and ``array_to_tensor``/``tensor_to_array`` the one pair between
(H, W, C) arrays and the network's (1, C, H, W) float tensors. ``bicubic_upscale``/``bicubic_downscale``
take an array or a picture.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import zlib
from dataclasses import dataclass, replace
from typing import IO, Literal, overload

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, TiffImagePlugin, features

Border = Literal["symmetric", "replicate"]
FileSource = str | os.PathLike | IO[bytes]  # a path, or a binary file object (an upload's bytes)
ImageSource = FileSource | Image.Image


# --------------------------------------------------------------------------------------------------
# MATLAB bicubic
# --------------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _contributions(in_len: int, out_len: int, scale: float, border: Border) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len, P) and 0-based source indices (out_len, P) along one axis, as MATLAB's
    ``contributions`` computes them."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx: np.ndarray = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    idx = idx.astype(np.int64) - 1  # 0-based
    if border == "symmetric":
        period = 2 * in_len
        idx = np.mod(idx, period)
        idx = np.where(idx < in_len, idx, period - 1 - idx)
    elif border == "replicate":
        idx = np.clip(idx, 0, in_len - 1)
    else:
        raise ValueError(f"border must be 'symmetric' or 'replicate', got {border!r}")
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero columns
    return weights[:, keep], idx[:, keep]


# float64 elements of one block of _resize_axis's work (~32 MB): large images are resized in slices
# along the other axis, so memory is the output plus a few blocks, not several float64 copies of it.
RESIZE_BLOCK_ELEMENTS = 4_000_000


def _resize_axis(img: np.ndarray, out_len: int, scale: float, border: Border, axis: int) -> np.ndarray:
    """Resize along ``axis``, the result cast back to ``img``'s dtype (MATLAB's rounding for integers)."""
    weights, idx = _contributions(img.shape[axis], out_len, scale, border)
    src = np.moveaxis(img, axis, 0)
    out = np.empty((out_len,) + src.shape[1:], dtype=img.dtype)
    extra = (slice(None),) + (None,) * (src.ndim - 1)
    per_column = out_len * int(np.prod(src.shape[2:], dtype=np.int64))
    step = max(1, RESIZE_BLOCK_ELEMENTS // max(per_column, 1))
    for j in range(0, src.shape[1], step):
        block = src[:, j : j + step].astype(np.float64)
        acc = np.zeros((out_len,) + block.shape[1:], dtype=np.float64)
        for k in range(weights.shape[1]):  # in index order, like MATLAB
            acc += weights[:, k][extra] * block[idx[:, k]]
        out[:, j : j + step] = _cast_like(acc, img.dtype)
    return np.moveaxis(out, 0, axis)


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded = np.where(values >= 0, np.floor(values + 0.5), np.ceil(values - 0.5))  # half away from zero
        return np.clip(rounded, info.min, info.max).astype(dtype)
    return values.astype(dtype)


def imresize(
    img: np.ndarray,
    scale: float | tuple[float, float] | None,
    *,
    border: Border = "symmetric",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` of an (H, W) or (H, W, C) array.

    ``size`` (H, W) overrides the output size, which otherwise is ``ceil(H * scale), ceil(W * scale)``,
    as MATLAB computes it. ``scale`` may be a (rows, columns) pair, or None with a ``size``: then each axis
    is scaled by its output length over its input length, as ``imresize(img, [rows cols])`` does. Integer
    arrays keep their dtype with MATLAB's rounding after each pass.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    h, w = img.shape[:2]
    if scale is None:
        if size is None:
            raise ValueError("imresize needs a scale or a size")
        scale = (size[0] / h, size[1] / w)
    scale_h, scale_w = scale if isinstance(scale, tuple) else (scale, scale)
    out_h, out_w = size if size is not None else (math.ceil(h * scale_h), math.ceil(w * scale_w))
    if min(out_h, out_w) < 1:
        raise ValueError(f"resizing {w}x{h} by {scale} leaves no pixels")
    out = _resize_axis(img, out_h, scale_h, border, axis=0)
    return _resize_axis(out, out_w, scale_w, border, axis=1)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that both sides are multiples of ``scale`` (the benchmarks' HR crop)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


# --------------------------------------------------------------------------------------------------
# Pictures: decoding any user image, with clear errors
# --------------------------------------------------------------------------------------------------

DEFAULT_MAX_INPUT_PIXELS = 16_000_000


class ImageError(ValueError):
    """An image that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class Picture:
    """A decoded user image.

    ``rgb`` is float32 (H, W, 3) in [0, 1]; ``alpha`` float32 (H, W) in [0, 1] or None; ``grey`` and
    ``bit_depth`` (8 or 16) say how to store the result so that grey stays grey and 16-bit stays 16-bit;
    ``icc`` and ``exif`` go with the pixels into every picture made from them and into the file saved. No
    colour is converted: the profile says what the numbers mean, and they are kept as they are.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grey: bool = False
    bit_depth: int = 8
    notes: tuple[str, ...] = ()
    icc: bytes | None = None  # the file's colour profile, where it describes these pixels (RGB or grey)
    exif: bytes | None = None  # the file's EXIF, less the orientation already applied and the thumbnail

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.rgb.shape[1], self.rgb.shape[0]


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels"
        )


CMYK_NOTE = "a CMYK image: converted to RGB without its colour profile; colours may shift"


def picture_from_pil(image: Image.Image, *, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> Picture:
    """Decode a PIL image of any mode: EXIF orientation applied, first frame of an animation. Integer and
    float grey modes ("I", "F": a float TIFF) are scaled by the rule of ``_grey_levels``."""
    notes: list[str] = []
    frames = getattr(image, "n_frames", 1)  # only multi-frame formats have it
    if frames > 1:
        image.seek(0)
        notes.append(f"animated image: used the first of its {frames} frames")
    _check_pixels(image.width, image.height, max_pixels)
    if image.width == 0 or image.height == 0:
        raise ImageError(f"the image is empty ({image.width}x{image.height} pixels)")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as err:  # libheif/libavif: RuntimeError
        raise ImageError(f"the image data could not be decoded ({err})") from err
    image, exif, exif_notes = _upright(image)
    notes += exif_notes
    mode = image.mode
    icc = _profile_of(image)
    if mode == "CMYK":  # Pillow's conversion is arithmetic: no colour management, whatever profile it had
        notes.append(CMYK_NOTE)
    if mode.startswith("I") or mode == "F":
        levels, bit_depth = _grey_levels(image)
        return Picture(
            np.repeat(levels[:, :, None], 3, axis=2),
            None,
            grey=True,
            bit_depth=bit_depth,
            notes=tuple(notes),
            icc=icc,
            exif=exif,
        )
    has_alpha = (
        mode in ("RGBA", "LA", "PA", "La", "RGBa")
        or (mode == "P" and "transparency" in image.info)
        or (mode in ("L", "RGB") and "transparency" in image.info)
    )
    grey = mode in ("1", "L", "LA", "La")
    if has_alpha:
        if mode == "La":  # premultiplied grey: Pillow converts it to RGBA only by way of LA
            image = image.convert("LA")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        rgba /= 255.0  # in place: one float copy of a large image, not two
        rgb, alpha = rgba[:, :, :3], rgba[:, :, 3]
    else:
        rgb, alpha = np.asarray(image.convert("RGB"), dtype=np.float32), None
        rgb /= 255.0
    return Picture(
        np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), grey=grey,
        notes=tuple(notes), icc=icc, exif=exif,
    )  # fmt: skip


def _grey_levels(image: Image.Image) -> tuple[np.ndarray, int]:
    """A grey image of PIL's integer ("I", "I;16"...) or float ("F") modes as float32 (H, W) in [0, 1], with
    the bit depth to store its results in. These modes do not say the scale of their values, so the values
    decide it, by one rule: "I;16" modes are 16-bit; an "I" image whose values lie within [0, 255] is taken
    as 8-bit (what ``convert("I")`` of an 8-bit image gives), within [0, 65535] as 16-bit; an "F" image
    (a float TIFF) within [0, 1] is taken as it is, within [0, 255] as 8-bit levels (kept at 16 bits, as
    they may have fractions). Values outside those ranges (negative, larger, or not finite) are refused."""
    values = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        return values / np.float32(65535), 16
    low, high = float(values.min()), float(values.max())
    float_image = image.mode == "F"
    ranges = ((1.0, 16), (255.0, 16)) if float_image else ((255.0, 8), (65535.0, 16))
    if math.isfinite(low) and math.isfinite(high) and low >= 0:
        for top, bit_depth in ranges:
            if high <= top:
                return (values if top == 1 else values / np.float32(top)), bit_depth
    kind, expected = (
        ("a float", "[0, 1] or [0, 255]") if float_image else ("a 32-bit integer", "[0, 255] or [0, 65535]")
    )
    raise ImageError(f"{kind} grey image with values from {low:g} to {high:g}; its values must lie within {expected}")


def _profile_of(image: Image.Image) -> bytes | None:
    """The ICC profile, where it describes the pixels as decoded: an RGB profile for colour, a grey one for
    grey (a CMYK photo's profile no longer does once it is RGB)."""
    icc = image.info.get("icc_profile")
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    grey = image.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "F")
    return icc if space == (b"GRAY" if grey else b"RGB ") else None


def _exif_of(image: Image.Image) -> bytes | None:
    """The EXIF of the image as shown, less the orientation (applied to the pixels); the thumbnail (IFD1)
    is not written back by ``Exif.tobytes``."""
    exif = image.getexif()
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        exif = _tiff_exif(exif)
    exif.pop(0x0112, None)
    return exif.tobytes() if len(exif) else None


# The tags of a TIFF's image directory that say how that file stores its pixels (size, samples, strips and
# tiles, compression, the colour map; the ICC profile, which a picture carries apart): Pillow gives that
# directory as the TIFF's EXIF, but written into another file these would misdescribe it.
TIFF_LAYOUT_TAGS = frozenset(
    (254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 284, 292, 293, 317, 320, 322, 323, 324, 325)
    + (330, 338, 339, 340, 341, 347, *range(512, 522), 530, 532, 34675)
)


def _tiff_exif(directory: Image.Exif) -> Image.Exif:
    """A TIFF's EXIF as a new ``Exif`` (the image keeps its own), without ``TIFF_LAYOUT_TAGS``."""
    exif = Image.Exif()
    for tag, value in directory.items():
        if tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            exif[tag] = directory.get_ifd(tag)  # the sub-directory read from the file: its offset means nothing here
        elif tag not in TIFF_LAYOUT_TAGS:
            exif[tag] = value
    return exif


# An EXIF is metadata: one that Pillow cannot parse never refuses the pixels. Its parser meets junk with
# many kinds of error (SyntaxError, struct.error, TypeError, AttributeError...), hence ``except Exception``.
EXIF_UNREADABLE = "its EXIF could not be read: left out, and the picture kept as stored (not rotated)"
EXIF_UNKEPT = "its EXIF could not be read in full: left out"
TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the turn that shows the image upright, as ``ImageOps.exif_transpose`` applies it
ORIENTATIONS = {method: orientation for orientation, method in TRANSPOSES.items()}


def _orientation(image: Image.Image, *, header_only: bool = False) -> int | None:
    """The EXIF orientation (1 where there is none or it is no orientation), or None where the EXIF cannot
    be parsed. ``header_only``: never decode the pixels to find it (a PNG's ``getexif`` would)."""
    raw = image.info.get("exif")
    try:
        if isinstance(raw, bytes) and raw:
            Image.Exif().load(raw)  # afresh: Pillow's JPEG opener has parsed it already, hiding any error
        exif = Image.Image.getexif(image) if header_only else image.getexif()
        orientation = exif.get(0x0112, 1)
        method = TRANSPOSES.get(orientation)  # looked up as exif_transpose does (6.0 is 6)
    except MemoryError:
        raise
    except Exception:
        return None
    return ORIENTATIONS[method] if method is not None else 1


def _upright(image: Image.Image) -> tuple[Image.Image, bytes | None, tuple[str, ...]]:
    """The image as shown (its EXIF orientation applied, as ``image_size`` reports it) and the EXIF to keep,
    with a note where the EXIF could not be read and was left out."""
    orientation = _orientation(image)
    if orientation is None:
        return image, None, (EXIF_UNREADABLE,)
    try:
        upright = ImageOps.exif_transpose(image)  # also drops the orientation tag it applied
        # A TIFF's EXIF is its image directory, read from the file: the upright copy has none of it.
        tiff = isinstance(image, TiffImagePlugin.TiffImageFile)
        return upright, _exif_of(image if tiff else upright), ()
    except MemoryError:
        raise
    except Exception:  # junk past the orientation (in a sub-IFD), met on writing the EXIF back
        turned = image.transpose(TRANSPOSES[orientation]) if orientation != 1 else image
        return turned, None, (EXIF_UNKEPT,)


FORMATS = "PNG, JPEG, WebP, AVIF, HEIC, BMP, TIFF or GIF"
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


@functools.cache
def heif_available() -> bool:
    """True where pillow-heif is installed: it is then registered with PIL, which opens HEIC/HEIF photos."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _unreadable(source: ImageSource) -> ImageError:
    """Why PIL could not identify a file: a format whose plugin is missing, or no image at all."""
    head = b""
    if isinstance(source, (str, os.PathLike)):
        with contextlib.suppress(OSError), open(source, "rb") as f:
            head = f.read(12)
    elif hasattr(source, "read") and hasattr(source, "seek"):
        with contextlib.suppress(OSError, ValueError):
            source.seek(0)
            head = source.read(12)
            source.seek(0)
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if brand in HEIF_BRANDS and not heif_available():
        return ImageError(
            "the file is a HEIC/HEIF photo; reading it needs the pillow-heif package (pip install pillow-heif)"
        )
    if brand in (b"avif", b"avis") and not features.check("avif"):
        return ImageError("the file is an AVIF image; reading it needs Pillow 11.3 or newer built with AVIF")
    return ImageError(f"the file is not an image that can be read ({FORMATS})")


PNG_MAX_CHUNKS = 1_000_000  # a 100 MB PNG in libpng's 8 KB IDAT chunks has ~12,000; walking one costs a seek
DECODER_ERRORS = (Image.DecompressionBombError, OSError, SyntaxError, ValueError, RuntimeError, EOFError)


def image_size(path: FileSource) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF rotation applied), from the file's header without decoding a
    pixel; None where the header cannot be read (``read_image`` then says why). A file object is left
    where it was.

    Pillow reads a PNG's EXIF only once it has decoded the pixels (an eXIf chunk may follow the image
    data), so for PNGs the chunks are walked by their lengths instead (``_png_exif``); every other format
    has its EXIF in the header Pillow parses on opening (libheif and libavif raise ``RuntimeError`` on a
    header they refuse)."""
    file = None if isinstance(path, (str, os.PathLike)) else path
    start = file.tell() if file is not None else None
    heif_available()
    try:
        with Image.open(path) as image:
            w, h = image.size
            png = image.format == "PNG"
            if png and "exif" not in image.info and image.fp is not None:
                found = _png_exif(image.fp)
                if found is not None:
                    image.info["exif"] = found
            # A PNG's through the base class: the header's EXIF, never a decode. An unreadable EXIF turns
            # nothing, as the decoder then leaves it out.
            rotated = _orientation(image, header_only=png) in (5, 6, 7, 8)  # orientations that swap the axes
            if rotated and isinstance(image, TiffImagePlugin.TiffImageFile):  # Pillow 12: a TIFF's size is upright
                rotated = (w, h) == (image.tag_v2.get(256), image.tag_v2.get(257))  # ImageWidth, ImageLength
    except DECODER_ERRORS:
        return None
    finally:
        if file is not None and start is not None:
            file.seek(start)
    return (h, w) if rotated else (w, h)


def _png_exif(fp: IO[bytes]) -> bytes | None:
    """The data of a PNG's eXIf chunk wherever it lies, found by seeking from chunk to chunk (8 bytes read
    each); None where there is none or the chunk list is damaged."""
    fp.seek(8)
    for _ in range(PNG_MAX_CHUNKS):
        head = fp.read(8)
        if len(head) < 8:
            return None
        length, kind = int.from_bytes(head[:4], "big"), head[4:]
        if kind == b"eXIf":
            data = fp.read(length)
            return data if len(data) == length else None
        if kind == b"IEND":
            return None
        fp.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    return None


def read_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> Picture:
    """Open a path, bytes-like file object or PIL image as a ``Picture``, with user-facing errors.

    16-bit colour PNG/TIFF files, which PIL reduces to 8 bits, are read at full depth with OpenCV, whatever
    the file's name.
    """
    if isinstance(source, Image.Image):
        return picture_from_pil(source, max_pixels=max_pixels)
    heif_available()
    start = None if isinstance(source, (str, os.PathLike)) else source.tell()
    try:
        with Image.open(source) as image:  # opened once: the header decides whether OpenCV reads it instead
            deep = _read_deep_colour(source, start, image, max_pixels)
            return deep if deep is not None else picture_from_pil(image, max_pixels=max_pixels)
    except Image.DecompressionBombError as err:
        declared = re.search(r"\((\d+) pixels\)", str(err))
        size = f" ({int(declared.group(1)):,} pixels)" if declared else ""
        raise ImageError(
            f"the image declares too many pixels to open safely{size}, a possible decompression bomb; "
            f"the limit is {max_pixels or Image.MAX_IMAGE_PIXELS:,} pixels"
        ) from err
    except (FileNotFoundError, ImageError):
        raise
    except Image.UnidentifiedImageError as err:
        raise _unreadable(source) from err
    except ValueError as err:  # Pillow's guard against text (zTXt, iTXt) and colour-profile (iCCP) bombs
        if "too large" in str(err).lower() or "too much memory" in str(err).lower():
            raise ImageError(
                "the image holds metadata (text or a colour profile) that expands to too much data to read "
                "safely, a possible decompression bomb"
            ) from err
        raise ImageError(f"the image data could not be decoded ({err})") from err
    except (OSError, SyntaxError, EOFError, RuntimeError) as err:  # libheif and libavif raise RuntimeError
        raise ImageError(f"the image data could not be decoded ({err})") from err


def _read_deep_colour(
    source: FileSource, start: int | None, image: Image.Image, max_pixels: int | None
) -> Picture | None:
    """The file ``source`` (a path, or a file object whose file begins at ``start``; open as ``image``) via
    OpenCV if it is 16-bit colour (H, W, 3|4), else None. Told by its header, never its name."""
    if image.mode not in ("RGB", "RGBA") or not _sixteen_bits(image):
        return None
    _check_pixels(image.width, image.height, max_pixels)
    import cv2

    if isinstance(source, (str, os.PathLike)):
        array = cv2.imread(os.fspath(source), cv2.IMREAD_UNCHANGED)
    else:
        position = source.tell()
        source.seek(start or 0)
        array = cv2.imdecode(np.frombuffer(source.read(), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        source.seek(position)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        pic = picture_from_pil(image, max_pixels=max_pixels)
        return replace(pic, notes=(*pic.notes, DEPTH_LOST))
    orientation = _orientation(image)  # OpenCV's IMREAD_UNCHANGED applies none
    exif, notes = None, (EXIF_UNREADABLE,) if orientation is None else ()
    if orientation is not None:
        array = _turned(array, orientation)
        try:
            exif = _exif_of(image)
        except MemoryError:
            raise
        except Exception:  # junk past the orientation
            notes = (EXIF_UNKEPT,)
    array = array.astype(np.float32) / 65535.0
    rgb = array[:, :, 2::-1]
    alpha = array[:, :, 3] if array.shape[2] == 4 else None
    return Picture(
        np.ascontiguousarray(rgb), alpha, grey=False, bit_depth=16, notes=notes, icc=_profile_of(image), exif=exif
    )


DEPTH_LOST = "a 16-bit file that could be read only at 8 bits a channel"


def _sixteen_bits(image: Image.Image) -> bool:
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        return set(image.tag_v2.get(258, ())) == {16}  # BitsPerSample, per channel
    return _png_bit_depth(image) == 16


def _turned(array: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, ...) array turned as ``TRANSPOSES[orientation]`` turns a PIL image (a view)."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }[orientation](array)


def _png_bit_depth(image: Image.Image) -> int | None:
    fp = image.fp if isinstance(image, PngImagePlugin.PngImageFile) else None
    if fp is None:  # not a PNG, or one whose file is already closed: only the open file's header tells
        return None
    pos = fp.tell()
    try:
        fp.seek(24)  # 8-byte signature, 4-byte length, "IHDR", width, height, then bit depth
        return fp.read(1)[0]
    finally:
        fp.seek(pos)


# --------------------------------------------------------------------------------------------------
# Integers and tensors: the one place that rounds, the one array <-> tensor pair
# --------------------------------------------------------------------------------------------------


def to_uint(values: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float values in [0, 1] as uint8 (``bit_depth`` 8) or uint16 (16): scaled to the type's range,
    rounded half to even, clipped. Every rounding of a float image to integers in the package is this
    one (MATLAB's imresize rounds integer images its own way, in ``_cast_like``)."""
    maximum, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    values = np.asarray(values)
    if values.ndim < 2:
        return np.clip(np.rint(values * np.float32(maximum)), 0, maximum).astype(dtype)
    out = np.empty_like(values, dtype=dtype)  # the input's memory layout, as astype would keep it
    # In bands of rows: a float temporary the size of a band, not of the image (outputs can be GBs).
    rows = max(1, 2**20 // values[0].size)
    for y0 in range(0, len(values), rows):
        scaled = values[y0 : y0 + rows] * np.float32(maximum)
        np.rint(scaled, out=scaled)
        out[y0 : y0 + rows] = np.clip(scaled, 0, maximum, out=scaled)
    return out


def colour_planes(pic: Picture) -> np.ndarray:
    """The picture's colour as floats: (H, W, 3), or (H, W, 1) for grey, the mean of its three planes
    (a network's output of a grey input is grey again only up to rounding)."""
    return pic.rgb.mean(axis=2, keepdims=True) if pic.grey else pic.rgb


def rgb8(pic: Picture) -> np.ndarray:
    """uint8 RGB (H, W, 3) of the colour, alpha ignored: what metrics and the 8-bit bicubic see."""
    return _three_planes(to_uint(colour_planes(pic)))


def _three_planes(planes: np.ndarray) -> np.ndarray:
    return np.repeat(planes, 3, axis=2) if planes.shape[2] == 1 else planes


def read_rgb8(source: ImageSource) -> np.ndarray:
    """A path, file object or PIL image as uint8 RGB (H, W, 3), as ``read_image`` decodes it (EXIF
    orientation applied, 16 bits rounded to 8) with no pixel limit but PIL's own: training data and
    benchmarks."""
    return rgb8(read_image(source, max_pixels=None))


def array_to_tensor(array: np.ndarray, *, copy: bool = True) -> torch.Tensor:
    """(H, W, C) or a batch (B, H, W, C), uint8 or float in [0, 1] -> float32 (1 or B, C, H, W) in
    [0, 1]: a contiguous copy, never sharing the array's memory; with ``copy=False`` a float32 array is
    viewed instead (channels-last strides, read-only use: the streamed trunk reads rows of it)."""
    batch = array if array.ndim == 4 else array[None]
    if not copy and batch.dtype == np.float32:
        return torch.from_numpy(batch).permute(0, 3, 1, 2)
    values = torch.from_numpy(np.array(batch.transpose(0, 3, 1, 2), order="C"))  # one copy, already NCHW
    return values.float().div_(255.0) if batch.dtype == np.uint8 else values.float()


def tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (1, C, H, W) -> float32 (H, W, C), not rounded (``to_uint`` rounds); a view where the
    tensor is float32 on the CPU, so large outputs are not copied."""
    return tensor.detach()[0].permute(1, 2, 0).float().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# Bicubic on pictures and arrays
# --------------------------------------------------------------------------------------------------


def resize_plane(
    values: np.ndarray, scale: float | tuple[float, float] | None, size: tuple[int, int], border: Border = "symmetric"
) -> np.ndarray:
    """A float plane or image (alpha, 16-bit colour) by MATLAB bicubic in float64, clipped to [0, 1]."""
    resized = imresize(values.astype(np.float64), scale, size=size, border=border)
    return np.clip(resized, 0, 1).astype(np.float32)


def _resize_picture(
    pic: Picture, scale: float | tuple[float, float] | None, size: tuple[int, int], border: Border = "symmetric"
) -> Picture:
    """8-bit colour through uint8 (rounded after each pass, as the literature's bicubic baseline);
    16-bit colour and alpha in float."""
    if pic.bit_depth == 8:
        rgb = imresize(rgb8(pic), scale, size=size, border=border).astype(np.float32)
        rgb /= 255.0
    else:
        rgb = resize_plane(pic.rgb, scale, size, border)
    alpha = None if pic.alpha is None else resize_plane(pic.alpha, scale, size, border)
    return replace(pic, rgb=rgb, alpha=alpha)


def resize_picture(pic: Picture, size: tuple[int, int]) -> Picture:
    """MATLAB bicubic to an exact (width, height), each axis scaled by its own ratio (antialiased where it
    shrinks), as ``bicubic_upscale`` resizes pictures."""
    return _resize_picture(pic, None, (size[1], size[0]))


def fill_hidden_colour(pic: Picture) -> Picture:
    """The picture with the colour under its fully transparent pixels replaced by that of the nearest
    visible pixel ("alpha bleeding"), so that the colour stored there, often black, does not bleed into the
    edges when the colour is upscaled. Premultiplying would not do: the network sharpens the colour while
    alpha is upscaled with bicubic, and their mismatch leaves a dark fringe (a white disc on transparent
    black, laid over white, came out no lighter than 173 premultiplied, 254 filled). A picture with no
    fully transparent pixel, or no visible one, is returned as it is."""
    if pic.alpha is None:
        return pic
    hidden = pic.alpha == 0
    if not hidden.any() or hidden.all():
        return pic
    from scipy import ndimage  # scikit-image's dependency; loaded only for pictures that need it

    nearest = np.empty((2, *hidden.shape), dtype=np.int32)  # int32 indices: half the memory of the default
    ndimage.distance_transform_edt(hidden, return_distances=False, return_indices=True, indices=nearest)
    return replace(pic, rgb=pic.rgb[nearest[0], nearest[1]])


def crop_picture(pic: Picture, size_hw: tuple[int, int]) -> Picture:
    """The top-left (height, width) of the picture."""
    h, w = size_hw
    return replace(pic, rgb=pic.rgb[:h, :w], alpha=None if pic.alpha is None else pic.alpha[:h, :w])


@overload
def bicubic_upscale(image: Picture, scale: int) -> Picture: ...
@overload
def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray: ...
def bicubic_upscale(image: Picture | np.ndarray, scale: int) -> Picture | np.ndarray:
    """MATLAB ``imresize(image, scale, 'bicubic')``, the bicubic baseline of the literature's tables. An
    array keeps its dtype (integers rounded after each pass, as MATLAB does); a picture is resized as
    ``_resize_picture`` says."""
    if isinstance(image, Picture):
        h, w = image.rgb.shape[:2]
        return _resize_picture(image, scale, (h * scale, w * scale))
    return imresize(image, scale, size=(image.shape[0] * scale, image.shape[1] * scale))


@overload
def bicubic_downscale(image: Picture, scale: int, *, border: Border = "symmetric") -> Picture: ...
@overload
def bicubic_downscale(image: np.ndarray, scale: int, *, border: Border = "symmetric") -> np.ndarray: ...
def bicubic_downscale(image: Picture | np.ndarray, scale: int, *, border: Border = "symmetric") -> Picture | np.ndarray:
    """The literature's LR image: cropped to a multiple of ``scale`` (``modcrop``), then MATLAB
    ``imresize(image, 1/scale)``; an array or a picture, as ``bicubic_upscale``."""
    h, w = image.rgb.shape[:2] if isinstance(image, Picture) else image.shape[:2]
    if min(h, w) < scale:
        raise ImageError(f"a {w}x{h} image is too small to downscale by {scale}")
    size = (h // scale, w // scale)
    if isinstance(image, Picture):
        return _resize_picture(crop_picture(image, (h - h % scale, w - w % scale)), 1 / scale, size, border)
    return imresize(modcrop(image, scale), 1 / scale, border=border, size=size)


# --------------------------------------------------------------------------------------------------
# Pictures out: integer arrays, PIL, files, previews
# --------------------------------------------------------------------------------------------------


def picture_to_array(pic: Picture) -> np.ndarray:
    """The picture as an integer array in its own depth: (H, W) grey, (H, W, 2) grey+alpha,
    (H, W, 3) RGB or (H, W, 4) RGBA; uint8 or uint16."""
    colour = colour_planes(pic)
    planes = colour if pic.alpha is None else np.concatenate([colour, pic.alpha[:, :, None]], axis=2)
    array = to_uint(planes, pic.bit_depth)
    return array[:, :, 0] if array.shape[2] == 1 else array


def picture_to_pil(pic: Picture) -> Image.Image:
    """A PIL image in the picture's own kind: L, LA, RGB, RGBA, or I;16 for 16-bit grey.

    16-bit colour has no PIL mode; it becomes 8-bit here (``save_picture`` keeps 16 bits).
    """
    if pic.bit_depth == 16 and pic.grey and pic.alpha is None:
        return Image.fromarray(picture_to_array(pic))  # uint16 (H, W) -> "I;16"
    return Image.fromarray(picture_to_array(replace(pic, bit_depth=8)))


OUTPUT_FORMATS = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
# A JPEG marker segment holds 65,533 bytes after its length: the EXIF's APP1 that much, its "Exif\0\0"
# header included (Pillow refuses more: "EXIF data is too long"); a profile's APP2s 65,519 each after
# their "ICC_PROFILE\0", sequence number and count, in at most 255 of them.
JPEG_MAX_EXIF = 65_533
JPEG_MAX_PROFILE = 255 * (65_533 - 14)


def output_format(value: object) -> str:
    """'png', 'webp' or 'jpeg' from what a caller wrote ('PNG', ' webp', 'jpg' too)."""
    fmt = str(value).strip().lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be 'png', 'webp' or 'jpeg'; got {value!r}")
    return fmt


def save_picture(pic: Picture, path: str | os.PathLike, *, format: str = "png") -> tuple[str, ...]:  # noqa: A002 (PIL's word)
    """Write the picture with its ICC profile and EXIF: as PNG (exact: 8 or 16 bits, grey, alpha), WebP
    (lossless, 8 bits, alpha) or JPEG (quality 95, 8 bits, no alpha). Returns notes on what the format
    could not hold (16 bits written as 8; alpha laid over white in a JPEG; a profile or EXIF too large for
    it, left out rather than failing after the work or writing a file that cannot be read back)."""
    fmt = output_format(format)
    path = os.fspath(path)
    meta = {k: v for k, v in (("icc_profile", pic.icc), ("exif", pic.exif)) if v}
    notes = []
    if fmt != "png" and pic.bit_depth == 16:
        notes.append(f"{fmt.upper()} holds 8 bits a channel: written at 8 bits (PNG keeps 16)")
        pic = replace(pic, bit_depth=8)
    if fmt == "webp" and pic.grey and _grey_profile(pic.icc):
        # WebP has no grey: the pixels go out as colour, where a grey profile is invalid (viewers would
        # ignore it or misrender), so it is left out.
        notes.append("WEBP writes this grey picture as colour: its grey colour profile was left out")
        meta.pop("icc_profile", None)
        pic = replace(pic, icc=None)
    profile_limit = {"png": PngImagePlugin.MAX_TEXT_CHUNK, "jpeg": JPEG_MAX_PROFILE}.get(fmt)
    if pic.icc and profile_limit is not None and len(pic.icc) > profile_limit:
        # Pillow refuses to open a PNG whose iCCP chunk inflates past MAX_TEXT_CHUNK; a JPEG's profile is
        # split over at most 255 APP2 segments (more wrap their count, and readers drop the profile).
        notes.append(
            f"{fmt.upper()} holds a colour profile of {profile_limit:,} bytes at most (for Pillow to read it back): "
            f"this picture's {len(pic.icc):,}-byte profile was left out"
        )
        meta.pop("icc_profile", None)
        pic = replace(pic, icc=None)
    if fmt == "jpeg" and pic.exif and len(pic.exif) > JPEG_MAX_EXIF:
        notes.append(
            f"JPEG holds {JPEG_MAX_EXIF:,} bytes of EXIF at most: this picture's {len(pic.exif):,} bytes of EXIF were "
            "left out (PNG and WebP keep them)"
        )
        meta.pop("exif", None)
        pic = replace(pic, exif=None)
    if fmt == "png" and pic.bit_depth == 16 and not (pic.grey and pic.alpha is None):
        import cv2

        array = picture_to_array(pic)
        array = array[:, :, [2, 1, 0, 3]] if array.shape[2] == 4 else array[:, :, ::-1]
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
        if not ok:
            raise OSError(f"could not encode {path}")
        with open(path, "wb") as f:
            f.write(_png_with_metadata(encoded.tobytes(), pic.icc, pic.exif))
        return tuple(notes)
    image = picture_to_pil(pic)
    if fmt == "png":
        image.save(path, format="PNG", **meta)
    elif fmt == "webp":
        image.save(path, format="WEBP", lossless=True, quality=100, exact=True, **meta)
    else:
        if pic.alpha is not None:
            notes.append("JPEG has no transparency: the picture was laid over white")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image.convert("RGBA")).convert("L" if pic.grey else "RGB")
        image.save(path, format="JPEG", quality=95, subsampling=0, **meta)
    return tuple(notes)


def _grey_profile(icc: bytes | None) -> bool:
    """True for an ICC profile of grey data (its header's colour space, bytes 16-19, is 'GRAY')."""
    return icc is not None and icc[16:20] == b"GRAY"


def _png_with_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """A PNG stream with iCCP and eXIf chunks added after its header (OpenCV writes neither)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    extra = b""
    if icc:
        extra += chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))
    if exif:
        extra += chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    header_end = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes and CRC
    return png[:header_end] + extra + png[header_end:]


def preview_rgb(pic: Picture, background: float = 0.5) -> np.ndarray:
    """uint8 RGB (H, W, 3) for display: alpha composited over a neutral grey, 16 bits reduced to 8."""
    rgb = colour_planes(pic)
    if pic.alpha is not None:
        a = pic.alpha[:, :, None]
        rgb = rgb * a + background * (1 - a)
    return _three_planes(to_uint(rgb))
