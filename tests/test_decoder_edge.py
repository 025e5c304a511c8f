"""Metadata the decoder cannot read never refuses pixels it can: a junk EXIF is left out, with a note, and
the size the header reports is the size decoded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sample_files import exif_png, photo

from mdsr.imaging import EXIF_UNKEPT, EXIF_UNREADABLE, image_size, read_image

JUNK = b"junk, not a TIFF header" * 4


def orientation_6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()[6:]  # an eXIf chunk holds the TIFF data, without JPEG's "Exif\0\0"


def make_as_a_fraction() -> bytes:
    """Orientation 6 in a readable first IFD whose camera make (0x010F, text) is stored as a fraction:
    Pillow reads the orientation, then fails on writing the EXIF back."""
    entries = [(0x010F, 10, 1, (38).to_bytes(4, "little")), (0x0112, 3, 1, (6).to_bytes(2, "little") + b"\0\0")]
    ifd = len(entries).to_bytes(2, "little")
    for tag, kind, count, value in entries:
        ifd += tag.to_bytes(2, "little") + kind.to_bytes(2, "little") + count.to_bytes(4, "little") + value
    return b"II*\x00\x08\x00\x00\x00" + ifd + bytes(4) + (1).to_bytes(4, "little") + (2).to_bytes(4, "little")


def test_a_png_with_a_junk_exif_chunk_decodes_with_a_note(tmp_path):
    pic = read_image(exif_png(tmp_path / "junk.png", JUNK))
    assert pic.size == (64, 48) and pic.exif is None and pic.notes == (EXIF_UNREADABLE,)
    assert np.array_equal((pic.rgb * 255).round().astype(np.uint8), np.asarray(photo()))


def test_a_png_with_a_junk_exif_chunk_is_sized_as_it_decodes(tmp_path):
    path = exif_png(tmp_path / "junk.png", JUNK)
    assert image_size(str(path)) == read_image(path).size == (64, 48)


def test_a_jpeg_with_a_junk_exif_block_decodes_with_a_note(tmp_path):
    buffer = io.BytesIO()
    photo().save(buffer, format="JPEG", quality=95)
    segment = b"Exif\0\0" + JUNK
    app1 = b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment
    (tmp_path / "junk.jpg").write_bytes(buffer.getvalue()[:2] + app1 + buffer.getvalue()[2:])
    pic = read_image(tmp_path / "junk.jpg")
    assert pic.size == (64, 48) and pic.exif is None and pic.notes == (EXIF_UNREADABLE,)


def test_an_exif_readable_only_in_part_keeps_its_orientation_and_is_left_out(tmp_path):
    path = exif_png(tmp_path / "fraction.png", make_as_a_fraction())
    pic = read_image(path)
    assert pic.size == image_size(str(path)) == (48, 64)
    assert pic.exif is None and pic.notes == (EXIF_UNKEPT,)


@pytest.mark.parametrize(
    ("exif", "size", "notes"),
    [(orientation_6(), (48, 64), ()), (JUNK, (64, 48), (EXIF_UNREADABLE,))],
    ids=["orientation 6", "junk"],
)
def test_a_16_bit_colour_png_is_turned_by_its_orientation_as_its_header_says(tmp_path, exif, size, notes):
    path = exif_png(tmp_path / "deep.png", exif, deep=True)
    pic = read_image(path)
    assert pic.bit_depth == 16 and pic.size == image_size(str(path)) == size and pic.notes == notes
    expected = np.asarray(photo(), dtype=np.uint16) * 257 + 5
    expected = np.rot90(expected, -1) if size == (48, 64) else expected  # orientation 6: a quarter turn clockwise
    assert np.array_equal(np.rint(pic.rgb * 65535).astype(np.uint16), expected)


def test_a_tiff_turned_by_its_exif_is_sized_as_it_decodes(tmp_path):
    """Pillow reports a TIFF's size upright already; its header size must not be turned a second time."""
    exif = photo().getexif()
    exif[0x0112] = 6
    path = tmp_path / "turned.tiff"
    photo().save(path, exif=exif.tobytes())
    assert image_size(str(path)) == read_image(path).size == (48, 64)


@pytest.mark.parametrize("name", ["scan", "scan.jpg", "scan.bin"])
def test_a_16_bit_colour_png_keeps_its_16_bits_whatever_its_name(tmp_path, name):
    deep = exif_png(tmp_path / "deep.png", orientation_6(), deep=True)
    renamed = deep.rename(tmp_path / name)
    assert read_image(renamed).bit_depth == 16


def test_a_16_bit_colour_png_read_from_memory_keeps_its_16_bits(tmp_path):
    deep = exif_png(tmp_path / "deep.png", orientation_6(), deep=True)
    from_memory, from_file = read_image(io.BytesIO(deep.read_bytes())), read_image(deep)
    assert from_memory.bit_depth == 16 and np.array_equal(from_memory.rgb, from_file.rgb)
