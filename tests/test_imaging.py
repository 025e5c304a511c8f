"""MATLAB-exact bicubic and reading every kind of user image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import BENCHMARK, needs_data
from PIL import Image
from sample_files import colour_profile, photo, write

from mdsr.imaging import (
    ImageError,
    array_to_tensor,
    bicubic_downscale,
    bicubic_upscale,
    imresize,
    picture_to_array,
    picture_to_pil,
    read_image,
    read_rgb8,
    rgb8,
    save_picture,
    tensor_to_array,
    to_uint,
)


def benchmark_lr_files():
    if not BENCHMARK.is_dir():
        return []
    return sorted(BENCHMARK.glob("*/LR_bicubic_*/X*/*.png"))


@needs_data
def test_every_benchmark_lr_file_is_reproduced_bit_for_bit():
    files = benchmark_lr_files()
    assert len(files) == 372
    mismatched = []
    for lr_file in files:
        scale = int(lr_file.parent.name[1:])
        border = "symmetric" if "symmetric" in lr_file.parts[-3] else "replicate"
        name = lr_file.stem[: -len(f"x{scale}")]
        hr_file = next((lr_file.parents[2] / "HR").glob(f"{name}.*"))
        ours = bicubic_downscale(read_rgb8(hr_file), scale, border=border)
        expected = np.asarray(Image.open(lr_file).convert("RGB"))
        if ours.shape != expected.shape or not np.array_equal(ours, expected):
            mismatched.append(str(lr_file))
    assert mismatched == []


def test_symmetric_and_replicate_borders_differ_only_at_the_edges(astronaut):
    hr = np.asarray(astronaut)
    sym, rep = bicubic_downscale(hr, 4, border="symmetric"), bicubic_downscale(hr, 4, border="replicate")
    assert np.array_equal(sym[2:-2, 2:-2], rep[2:-2, 2:-2])
    assert not np.array_equal(sym, rep)


def test_a_constant_image_stays_constant_at_every_scale():
    flat = np.full((30, 27, 3), 117, dtype=np.uint8)
    for scale in (2, 3, 4):
        assert np.all(bicubic_downscale(flat, scale) == 117)
        assert np.all(bicubic_upscale(flat, scale) == 117)


def test_downscale_crops_to_a_multiple_of_the_scale_first(chelsea):
    hr = np.asarray(chelsea)  # 451x300
    assert bicubic_downscale(hr, 3).shape == (100, 150, 3)
    assert bicubic_downscale(hr, 4).shape == (75, 112, 3)


def test_float_images_are_not_rounded():
    ramp = np.linspace(0, 1, 40 * 40, dtype=np.float64).reshape(40, 40)
    out = imresize(ramp, 0.5)
    assert out.dtype == np.float64 and not np.allclose(out * 255, np.round(out * 255))


def test_an_image_smaller_than_the_scale_cannot_be_downscaled():
    with pytest.raises(ValueError, match="too small"):
        bicubic_downscale(np.zeros((3, 3, 3), np.uint8), 4)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ("not_an_image", "not an image"),
        ("empty_file", "not an image"),
        ("truncated_png", "could not be decoded"),
        ("decompression_bomb", r"\(900,000,000 pixels\), a possible decompression bomb"),
    ],
)
def test_unreadable_files_give_a_clear_error(tmp_path, sample, message):
    with pytest.raises(ImageError, match=message):
        read_image(write(tmp_path, sample))


def test_the_pixel_cap_names_the_size_and_the_limit(tmp_path):
    with pytest.raises(ImageError, match=r"64x48 = 3,072 pixels; the limit is 3,000 pixels"):
        read_image(write(tmp_path, "rgba_png"), max_pixels=3000)


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    pic = read_image(write(tmp_path, "cmyk_jpeg"))
    assert pic.rgb.shape == (48, 64, 3) and not pic.grey and pic.alpha is None


def test_a_cmyk_photo_is_converted_to_rgb_with_a_note_that_its_colours_may_shift(tmp_path):
    pic = read_image(write(tmp_path, "cmyk_jpeg"))
    assert pic.notes == ("a CMYK image: converted to RGB without its colour profile; colours may shift",)


def test_an_rgb_photo_gets_no_colour_note(tmp_path):
    assert read_image(write(tmp_path, "phone_jpeg")).notes == ()


def test_palette_transparency_becomes_alpha(tmp_path):
    pic = read_image(write(tmp_path, "palette_transparent_png"))
    assert pic.alpha is not None and pic.alpha.min() == 0.0 and pic.alpha.max() == 1.0


def test_grey_with_alpha_stays_grey_with_alpha(tmp_path):
    pic = read_image(write(tmp_path, "grey_alpha_png"))
    assert pic.grey and pic.alpha is not None
    assert picture_to_pil(pic).mode == "LA"


def test_16_bit_grey_keeps_all_16_bits(tmp_path):
    path = write(tmp_path, "grey16_png")
    pic = read_image(path)
    assert pic.grey and pic.bit_depth == 16
    assert np.array_equal(picture_to_array(pic), np.asarray(Image.open(path)).astype(np.uint16))


def test_a_float_image_of_8_bit_levels_is_read_at_8_bit_scale(coffee):
    grey = coffee.convert("L")
    pic = read_image(grey.convert("F"))
    assert np.allclose(pic.rgb[:, :, 0] * 255, np.asarray(grey), atol=1e-3)


def test_a_float_tiff_of_8_bit_levels_is_read_at_8_bit_scale(coffee, tmp_path):
    grey = coffee.convert("L")
    grey.convert("F").save(tmp_path / "float.tif")
    pic = read_image(tmp_path / "float.tif")
    assert np.allclose(pic.rgb[:, :, 0] * 255, np.asarray(grey), atol=1e-3)


def test_a_float_image_outside_both_scales_is_refused_naming_its_range(coffee):
    brighter = Image.fromarray(np.asarray(coffee.convert("F")) * 2)
    with pytest.raises(ImageError, match=r"values from \S+ to 510; its values must lie within \[0, 1\] or \[0, 255\]"):
        read_image(brighter)


def test_an_integer_image_of_8_bit_levels_stays_8_bit(coffee):
    grey = coffee.convert("L")
    pic = read_image(grey.convert("I"))
    assert pic.bit_depth == 8 and np.array_equal(picture_to_array(pic), np.asarray(grey))


def test_16_bit_colour_keeps_all_16_bits_through_a_save(tmp_path):
    import cv2

    path = write(tmp_path, "rgb16_png")
    pic = read_image(path)
    assert pic.bit_depth == 16 and not pic.grey
    save_picture(pic, tmp_path / "copy.png")
    assert np.array_equal(
        cv2.imread(str(tmp_path / "copy.png"), cv2.IMREAD_UNCHANGED), cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    )


def test_exif_orientation_is_applied(tmp_path):
    pic = read_image(write(tmp_path, "exif_rotated_jpeg"))
    assert pic.size == (48, 64)


def test_animated_images_use_the_first_frame_and_say_so(tmp_path):
    pic = read_image(write(tmp_path, "animated_gif"))
    assert pic.size == (64, 48)
    assert any("first of its 3 frames" in note for note in pic.notes)


def test_8_bit_rgb_of_a_16_bit_colour_file_is_rounded_not_truncated(tmp_path):
    import cv2

    path = write(tmp_path, "rgb16_png")
    deep = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, ::-1].astype(np.float64)
    assert np.array_equal(read_rgb8(path), np.round(deep / 257).astype(np.uint8))


def test_8_bit_rgb_of_a_grey_image_repeats_its_grey(tmp_path):
    path = write(tmp_path, "grey16_png")
    grey = np.round(np.asarray(Image.open(path), dtype=np.float64) / 257).astype(np.uint8)
    assert np.array_equal(read_rgb8(path), np.repeat(grey[:, :, None], 3, axis=2))


def test_to_uint_rounds_half_to_even_and_clips():
    values = np.array([-0.1, 0.5 / 255, 1.5 / 255, 254.5 / 255, 1.2], dtype=np.float64)
    assert to_uint(values).tolist() == [0, 0, 2, 254, 255]
    assert to_uint(np.array([1.0, 0.5]), 16).tolist() == [65535, 32768]


def test_arrays_and_tensors_convert_both_ways_without_sharing_memory(chelsea):
    photo = np.asarray(chelsea)
    tensor = array_to_tensor(photo)
    assert tensor.shape == (1, 3, 300, 451) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert np.array_equal(to_uint(tensor_to_array(tensor)), photo)
    floats = photo.astype(np.float32) / 255
    array_to_tensor(floats).zero_()
    assert floats.max() > 0


def test_a_batch_of_arrays_becomes_a_batch_of_tensors(chelsea):
    batch = np.stack([np.asarray(chelsea)[:32, :48]] * 4)
    assert array_to_tensor(batch).shape == (4, 3, 32, 48)


def test_bicubic_of_an_8_bit_picture_equals_bicubic_of_its_array(chelsea):
    photo = np.asarray(chelsea)
    pic = read_image(chelsea)
    assert np.array_equal(rgb8(bicubic_upscale(pic, 3)), bicubic_upscale(photo, 3))
    assert np.array_equal(rgb8(bicubic_downscale(pic, 3)), bicubic_downscale(photo, 3))


@pytest.mark.parametrize("sample", ["heic_rotated", "avif_rotated"])
def test_phone_formats_decode_upright(tmp_path, sample):
    pytest.importorskip("pillow_heif")
    pic = read_image(write(tmp_path, sample))
    assert (
        pic.size == (48, 64) and abs(float(pic.rgb.mean()) - float(np.asarray(photo(), np.float32).mean() / 255)) < 0.02
    )


def test_a_heic_photo_without_its_plugin_names_the_plugin(tmp_path, monkeypatch):
    pytest.importorskip("pillow_heif")
    path = write(tmp_path, "heic_rotated")
    monkeypatch.setattr("mdsr.imaging.heif_available", lambda: False)
    for registry in (Image.OPEN, Image.MIME, Image.EXTENSION):  # as if pillow-heif had never been registered
        for key in [k for k, v in registry.items() if "HEIF" in str(k).upper() or "HEIF" in str(v).upper()]:
            monkeypatch.delitem(registry, key)
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if "HEIF" not in i.upper()])
    with pytest.raises(ImageError, match=r"a HEIC/HEIF photo; reading it needs the pillow-heif package"):
        read_image(path)


def test_a_file_named_heic_that_is_not_one_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="not an image that can be read"):
        read_image(write(tmp_path, "heic_that_is_not_one"))


def metadata_of(path) -> tuple[bytes | None, dict, tuple[int, int]]:
    with Image.open(path) as image:
        return image.info.get("icc_profile"), dict(image.getexif()), image.size


def test_a_photos_profile_and_exif_come_along_less_the_orientation_it_applied(tmp_path):
    pic = read_image(write(tmp_path, "phone_jpeg"))
    assert pic.size == (48, 64) and pic.icc == colour_profile()
    exif = Image.Exif()
    exif.load(pic.exif)
    assert dict(exif) == {0x010F: "Phone maker", 0x0110: "Phone 15"}


def test_a_tiffs_exif_comes_along_less_the_orientation_and_the_tags_of_its_own_layout(tmp_path):
    pic = read_image(write(tmp_path, "phone_tiff"))
    assert pic.size == (48, 64) and pic.exif is not None
    exif = Image.Exif()
    exif.load(pic.exif)
    assert {tag: exif[tag] for tag in exif if tag != 0x8769} == {0x010F: "Phone maker", 0x0110: "Phone 15"}
    assert exif.get_ifd(0x8769) == {0x9003: "2024:05:01 10:00:00"}


def test_a_cmyk_photos_profile_is_dropped_with_its_colour_space(tmp_path):
    from PIL import ImageCms

    cmyk = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = cmyk[:16] + b"CMYK" + cmyk[20:]  # a profile of another colour space than the pixels decoded
    photo().convert("CMYK").save(tmp_path / "cmyk.jpg", icc_profile=cmyk)
    assert read_image(tmp_path / "cmyk.jpg").icc is None


@pytest.mark.parametrize(("fmt", "kept"), [("png", True), ("jpeg", True), ("webp", False)])
def test_a_grey_profile_stays_only_where_the_picture_stays_grey(tmp_path, fmt, kept):
    grey = colour_profile()[:16] + b"GRAY" + colour_profile()[20:]  # a profile of grey data, as scanners write
    photo().convert("L").save(tmp_path / "scan.png", icc_profile=grey)
    notes = save_picture(read_image(tmp_path / "scan.png"), tmp_path / "out", format=fmt)
    with Image.open(tmp_path / "out") as out:
        assert (out.info.get("icc_profile") == grey) == kept and (out.mode == "L") == kept
    assert notes == (() if kept else ("WEBP writes this grey picture as colour: its grey colour profile was left out",))


@pytest.mark.parametrize(("fmt", "suffix"), [("png", ".png"), ("webp", ".webp"), ("jpeg", ".jpg")])
def test_every_output_format_keeps_the_profile_and_exif(tmp_path, fmt, suffix):
    pic = read_image(write(tmp_path, "phone_jpeg"))
    assert save_picture(pic, tmp_path / f"out{suffix}", format=fmt) == ()
    icc, exif, size = metadata_of(tmp_path / f"out{suffix}")
    assert icc == colour_profile() and exif.get(0x0110) == "Phone 15" and 0x0112 not in exif and size == (48, 64)


def test_a_16_bit_colour_png_keeps_its_16_bits_and_its_profile(tmp_path):
    import cv2

    pic = dataclasses.replace(read_image(write(tmp_path, "rgb16_png")), icc=colour_profile())
    save_picture(pic, tmp_path / "out.png")
    assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert metadata_of(tmp_path / "out.png")[0] == colour_profile()


def test_what_a_format_cannot_hold_is_said(tmp_path):
    deep, alpha = read_image(write(tmp_path, "rgb16_png")), read_image(write(tmp_path, "rgba_png"))
    assert "8 bits" in save_picture(deep, tmp_path / "a.webp", format="webp")[0]
    assert "laid over white" in save_picture(alpha, tmp_path / "b.jpg", format="jpeg")[0]
    assert Image.open(tmp_path / "b.jpg").mode == "RGB"
    with pytest.raises(ValueError, match="format must be 'png', 'webp' or 'jpeg'; got 'gif'"):
        save_picture(deep, tmp_path / "c.gif", format="gif")


def long_exif(length: int) -> bytes:
    """An EXIF of exactly ``length`` bytes ("Exif\\0\\0" header included): a long image description (0x010E),
    then zero bytes (Pillow writes whole words)."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 100
    exif[0x010E] = "x" * (length - (len(exif.tobytes()) - 100) - 1)
    data = exif.tobytes()
    return data + bytes(length - len(data))


def large_profile(length: int) -> bytes:
    """A profile of ``length`` bytes: a 128-byte header saying RGB, then random bytes (that deflate cannot
    shrink)."""
    header = bytearray(128)
    header[0:4], header[16:20], header[36:40] = (128).to_bytes(4, "big"), b"RGB ", b"acsp"
    return bytes(header) + np.random.default_rng(0).bytes(length - 128)


def test_an_exif_too_long_for_a_jpeg_is_left_out_with_a_note(tmp_path):
    pic = dataclasses.replace(read_image(photo()), exif=long_exif(70_000))
    notes = save_picture(pic, tmp_path / "out.jpg", format="jpeg")
    assert notes == (
        "JPEG holds 65,533 bytes of EXIF at most: this picture's 70,000 bytes of EXIF were left out (PNG and WebP "
        "keep them)",
    )
    assert metadata_of(tmp_path / "out.jpg")[1:] == ({}, (64, 48))


def test_an_exif_of_the_most_a_jpeg_holds_is_kept(tmp_path):
    pic = dataclasses.replace(read_image(photo()), exif=long_exif(65_533))
    assert save_picture(pic, tmp_path / "out.jpg", format="jpeg") == ()
    assert len(metadata_of(tmp_path / "out.jpg")[1][0x010E]) > 65_000


@pytest.mark.parametrize("sample", ["rgba_png", "rgb16_png"])  # PIL's PNG writer, and OpenCV's with our chunks
def test_a_profile_too_large_for_pillow_to_read_back_is_left_out_of_a_png_with_a_note(tmp_path, sample):
    pic = dataclasses.replace(read_image(write(tmp_path, sample)), icc=large_profile(10_000_000))
    notes = save_picture(pic, tmp_path / "out.png")
    assert notes == (
        "PNG holds a colour profile of 1,048,576 bytes at most (for Pillow to read it back): this picture's "
        "10,000,000-byte profile was left out",
    )
    assert read_image(tmp_path / "out.png").icc is None


def test_a_profile_of_the_most_pillow_reads_back_is_kept_in_a_png(tmp_path):
    from PIL import PngImagePlugin

    profile = large_profile(PngImagePlugin.MAX_TEXT_CHUNK)
    assert save_picture(dataclasses.replace(read_image(photo()), icc=profile), tmp_path / "out.png") == ()
    assert read_image(tmp_path / "out.png").icc == profile


def test_a_profile_too_large_for_a_jpeg_is_left_out_with_a_note(tmp_path):
    pic = dataclasses.replace(read_image(photo()), icc=large_profile(17_000_000))
    notes = save_picture(pic, tmp_path / "out.jpg", format="jpeg")
    assert notes == (
        "JPEG holds a colour profile of 16,707,345 bytes at most (for Pillow to read it back): this picture's "
        "17,000,000-byte profile was left out",
    )
    assert metadata_of(tmp_path / "out.jpg")[0] is None
