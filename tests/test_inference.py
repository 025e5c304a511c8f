"""Inference: exact tiling, self-ensemble, precision, progress, and every kind of picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import as_tensor, crop
from PIL import Image
from sample_files import write

from mdsr.imaging import ImageError, read_image
from mdsr.inference import CpuKind, bf16_supported, resolve_precision, super_resolve, upscale, upscale_picture


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_inference_equals_whole_image_inference(tiny_model, astronaut, scale):
    lr = as_tensor(crop(astronaut, (150, 110), (180, 60)))
    whole = super_resolve(tiny_model, lr, scale, precision="fp32")
    tiled = super_resolve(tiny_model, lr, scale, tile=32, precision="fp32")
    assert (whole - tiled).abs().max().item() < 1e-5


def test_self_ensemble_commutes_with_flipping_the_input(tiny_model, chelsea):
    lr = as_tensor(crop(chelsea, (40, 32), (200, 100)))
    flipped_first = super_resolve(tiny_model, lr.flip(3), 2, self_ensemble=True, precision="fp32")
    flipped_after = super_resolve(tiny_model, lr, 2, self_ensemble=True, precision="fp32").flip(3)
    assert (flipped_first - flipped_after).abs().max().item() < 1e-5


def test_self_ensemble_differs_from_a_single_pass(tiny_model, chelsea):
    lr = as_tensor(crop(chelsea, (40, 32), (200, 100)))
    assert not torch.allclose(super_resolve(tiny_model, lr, 2, self_ensemble=True), super_resolve(tiny_model, lr, 2))


TINY_TRUNK_STEPS = 6  # head, 2 pre-process blocks, 2 body blocks, the body's end


def test_self_ensemble_progress_counts_every_step_of_every_pass(tiny_model, coffee):
    calls = []
    lr = as_tensor(crop(coffee, (40, 20)))
    super_resolve(tiny_model, lr, 2, tile=20, self_ensemble=True, progress=lambda n, t: calls.append((n, t)))
    total = 8 * (TINY_TRUNK_STEPS + 2)
    assert calls == [(n, total) for n in range(1, total + 1)]


def test_progress_reports_every_block_and_tile(tiny_model, coffee):
    calls = []
    super_resolve(
        tiny_model, as_tensor(crop(coffee, (100, 70))), 2, tile=32, progress=lambda n, t: calls.append((n, t))
    )
    total = TINY_TRUNK_STEPS + 12
    assert calls == [(n, total) for n in range(1, total + 1)]


# The CPU kinds seen so far (flags as /proc/cpuinfo lists them, abridged) and one without AVX2.
AMD_EPYC_BF16 = "avx2 avx512f avx512_bf16 avx512_vnni"
XEON_VNNI = "avx2 avx512f avx512_vnni"
XEON_AMX = "avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8"
AVX2_ONLY = "sse4_2 avx avx2 fma"  # a Zen 3 EPYC
SSE_ONLY = "sse4_1 sse4_2 popcnt"


@pytest.mark.parametrize("flags", [AMD_EPYC_BF16, XEON_VNNI, XEON_AMX, AVX2_ONLY])
def test_auto_is_int8_on_cpus_with_8_bit_dot_products_or_avx2(flags, monkeypatch):
    monkeypatch.setattr("mdsr.inference.host_cpu", lambda: CpuKind.from_flags(flags))
    monkeypatch.setattr("mdsr.inference.int8_available", lambda device="cpu": True)
    assert resolve_precision("auto") == "int8"


def test_auto_is_fp32_on_cpus_without_either(monkeypatch):
    monkeypatch.setattr("mdsr.inference.host_cpu", lambda: CpuKind.from_flags(SSE_ONLY))
    monkeypatch.setattr("mdsr.inference.int8_available", lambda device="cpu": True)
    assert resolve_precision("auto") == "fp32"


def test_auto_is_fp32_where_this_pytorch_has_no_int8_convolution(monkeypatch):
    monkeypatch.setattr("mdsr.inference.host_cpu", lambda: CpuKind.from_flags(XEON_VNNI))
    monkeypatch.setattr("mdsr.inference.int8_available", lambda device="cpu": False)
    assert resolve_precision("auto") == "fp32"


@pytest.mark.parametrize("flags", [AMD_EPYC_BF16, XEON_AMX])
def test_bf16_counts_as_native_only_with_the_cpu_flags_for_it(flags):
    assert bf16_supported(cpu=CpuKind.from_flags(flags))
    assert not bf16_supported(cpu=CpuKind.from_flags(XEON_VNNI))


def test_cpu_flags_are_read_as_whole_words():
    assert CpuKind.from_flags(AMD_EPYC_BF16) == CpuKind(int8=True, bf16=True, avx2=True)
    assert CpuKind.from_flags(XEON_VNNI) == CpuKind(int8=True, bf16=False, avx2=True)
    assert CpuKind.from_flags(AVX2_ONLY) == CpuKind(int8=False, bf16=False, avx2=True)
    assert CpuKind.from_flags("avx512_vnnix avx512_bf16x avx2x") == CpuKind(int8=False, bf16=False)


def test_an_explicit_precision_is_kept(monkeypatch):
    monkeypatch.setattr("mdsr.inference.int8_available", lambda device="cpu": True)
    assert resolve_precision("int8") == "int8"


def test_bf16_where_unsupported_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("mdsr.inference.bf16_available", lambda device="cpu": False)
    with pytest.raises(ValueError, match="bf16 is not supported"):
        resolve_precision("bf16")


def test_the_output_pixel_cap_names_the_output_size(tiny_model, coffee):
    with pytest.raises(ImageError, match=r"a 300x200 image upscaled to 1200x800 would be 960,000 pixels; the output limit is 500,000 pixels"):
        upscale(tiny_model, crop(coffee, (300, 200)), 4, max_output_pixels=500_000)


def test_a_one_pixel_image_is_a_clear_error(tiny_model, tmp_path):
    with pytest.raises(ImageError, match="at least 2 pixels"):
        upscale_picture(tiny_model, read_image(write(tmp_path, "one_pixel")), 2)


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_empty_image_is_a_clear_error(tiny_model, size):
    with pytest.raises(ImageError, match=rf"the image is empty \({size[0]}x{size[1]} pixels\)"):
        upscale(tiny_model, Image.new("RGB", size), 2)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (dict(image="photo.png"), TypeError, r"upscale takes a PIL image \(PIL.Image.open\(path\)\); got str"),
        (dict(image=np.zeros((8, 8, 3))), TypeError, r"upscale takes a PIL image .*; got ndarray"),
        (dict(model=None), TypeError, r"model must be an mdsr.MDSR .*; got NoneType"),
        (dict(size="200x"), ValueError, r"give a scale or a size, not both; got scale 2 and size '200x'"),
        (dict(tile="x"), ValueError, r"tile must be 'auto', None or a whole number of at least 16 LR pixels; got 'x'"),
        (dict(progress=5), TypeError, r"progress must be a function called as progress\(done, total\); got 5"),
        (dict(self_ensemble="yes"), TypeError, r"self_ensemble must be True or False; got 'yes'"),
    ],
    ids=["path", "array", "no_model", "scale_and_size", "tile", "progress", "self_ensemble"],
)
def test_a_wrong_argument_to_upscale_is_named_in_one_sentence(tiny_model, coffee, arguments, error, message):
    given = {"model": tiny_model, "image": crop(coffee, (24, 16)), "scale": 2, **arguments}
    with pytest.raises(error, match=message):
        upscale(given.pop("model"), given.pop("image"), given.pop("scale"), **given)


def test_a_premultiplied_grey_image_keeps_its_alpha(tiny_model, coffee):
    premultiplied = crop(coffee, (24, 16)).convert("LA").convert("La")
    assert upscale(tiny_model, premultiplied, 2).mode == "LA"


@pytest.mark.parametrize(
    ("sample", "mode"),
    [("rgba_png", "RGBA"), ("grey_alpha_png", "LA"), ("palette_transparent_png", "RGBA"), ("cmyk_jpeg", "RGB")],
)
def test_upscale_keeps_the_kind_of_image(tiny_model, tmp_path, sample, mode):
    out = upscale(tiny_model, Image.open(write(tmp_path, sample)), 3)
    assert out.mode == mode and out.size == (192, 144)


def test_alpha_is_upscaled_smoothly_not_by_the_network(tiny_model, tmp_path):
    source = Image.open(write(tmp_path, "rgba_png"))
    out = upscale(tiny_model, source, 2)
    alpha_in = np.asarray(source)[:, :, 3].astype(float)
    alpha_out = np.asarray(out)[:, :, 3].astype(float)
    assert abs(alpha_out.mean() - alpha_in.mean()) < 1.0


def with_hidden_colour(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """``image`` as RGBA: its left half fully transparent with ``colour`` stored there, its right half opaque."""
    rgba = np.array(image.convert("RGBA"))
    rgba[:, : rgba.shape[1] // 2] = (*colour, 0)
    return Image.fromarray(rgba, "RGBA")


def test_the_colour_under_transparent_pixels_does_not_reach_the_visible_ones(tiny_model, coffee):
    photo = crop(coffee, (48, 32), (200, 150))
    under_black = np.asarray(upscale(tiny_model, with_hidden_colour(photo, (0, 0, 0)), 2, precision="fp32"))
    under_red = np.asarray(upscale(tiny_model, with_hidden_colour(photo, (255, 0, 0)), 2, precision="fp32"))
    visible = under_black[:, :, 3] > 0
    assert np.array_equal(under_black[visible], under_red[visible])


def test_an_opaque_rgba_image_is_upscaled_exactly_as_without_alpha(tiny_model, coffee):
    photo = crop(coffee, (48, 32), (200, 150))
    with_alpha = np.asarray(upscale(tiny_model, photo.convert("RGBA"), 3, precision="fp32"))
    assert np.array_equal(with_alpha[:, :, :3], np.asarray(upscale(tiny_model, photo, 3, precision="fp32")))


def test_16_bit_grey_stays_16_bit(tiny_model, tmp_path):
    pic = read_image(write(tmp_path, "grey16_png"))
    result, _ = upscale_picture(tiny_model, pic, 2)
    assert result.bit_depth == 16 and result.grey and result.rgb.shape == (96, 128, 3)


def test_run_info_reports_what_ran(tiny_model, coffee):
    pic = read_image(crop(coffee, (300, 280)))
    _, info = upscale_picture(tiny_model, pic, 2, tile=128, precision="fp32")
    assert (info.scale, info.precision, info.device, info.tiles) == (2, "fp32", "cpu", 9)


def test_without_edge_padding_it_is_the_bare_network(tiny_model, coffee):
    lr = as_tensor(crop(coffee, (40, 30)))
    with torch.inference_mode():
        bare = tiny_model(lr, 3).clamp(0, 1)
    assert torch.allclose(super_resolve(tiny_model, lr, 3, edge_padding=0, precision="fp32"), bare, atol=1e-5)


def test_auto_is_fp32_on_a_gpu_too_as_bf16_misses_the_bar(monkeypatch):
    from mdsr.inference import auto_precision

    monkeypatch.setattr("mdsr.inference.bf16_supported", lambda *a, **k: True)
    assert auto_precision("cuda") == "fp32"


def test_the_bicubic_baseline_sees_the_same_filled_colour_as_the_network(tiny_model, coffee):
    from mdsr.compare import compare
    from mdsr.inference import plan_run
    from mdsr.sizing import plan

    photo = crop(coffee, (48, 32), (200, 150))
    baselines = []
    for colour in ((0, 0, 0), (255, 0, 0)):
        pic = read_image(with_hidden_colour(photo, colour))
        run = plan_run(pic.size, plan(pic.size, 2), precision="fp32")
        made = compare({2: tiny_model}, pic, run).bicubic
        assert made is not None and made.alpha is not None
        baselines.append(made.rgb[made.alpha > 0])
    assert np.array_equal(*baselines)  # what was stored under the transparent half reaches neither picture
