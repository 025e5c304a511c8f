"""The fused attention kernels: eager's values in fewer passes, and eager where they cannot be built."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from conftest import as_array, as_tensor, crop

from mdsr import kernels, streaming
from mdsr.inference import super_resolve, upscale
from mdsr.model import MDSR, ResBlock
from mdsr.weights import load_model

needs_kernels = pytest.mark.skipif(not kernels.available(), reason="no C compiler here: the kernels are off")


def counted(monkeypatch) -> list[str]:
    """Record each call of the kernels that touch the 64-channel map, passing it on."""
    calls: list[str] = []
    stats, gate = kernels.channel_mean_and_peak, kernels.gate_and_add
    monkeypatch.setattr(kernels, "channel_mean_and_peak", lambda res: calls.append("stats") or stats(res))
    monkeypatch.setattr(kernels, "gate_and_add", lambda *maps: calls.append("gate") or gate(*maps))
    return calls


@pytest.fixture
def rebuilt():
    """Each test that changes how the kernels build sees a fresh build, and leaves one behind it."""
    kernels._library.cache_clear()
    yield
    kernels._library.cache_clear()


@torch.inference_mode()
def block_maps(model: MDSR, image) -> tuple[ResBlock, torch.Tensor, torch.Tensor]:
    """The first block of a real image's features: the block, its input and its branch's output (before the
    attention), both fp32 channels-last."""
    lr = as_tensor(image).contiguous(memory_format=torch.channels_last)
    block = model.pre_blocks(2)[0]
    x = model.head(lr)
    return block, x, block.body(x)


@needs_kernels
def test_one_pass_gives_the_channel_mean_and_the_maximum_over_channels(tiny_model, astronaut):
    _, _, res = block_maps(tiny_model, crop(astronaut, (90, 70), (150, 40)))
    mean, peak = kernels.channel_mean_and_peak(res)
    assert torch.allclose(mean, res.mean(dim=(2, 3), keepdim=True), rtol=1e-6, atol=1e-7)
    assert torch.equal(peak, res.amax(dim=1, keepdim=True))


@needs_kernels
def test_the_spatial_gate_is_the_attentions_own(tiny_model, coffee):
    block, _, res = block_maps(tiny_model, crop(coffee, (80, 64), (200, 120)))
    assert block.attention is not None
    _, peak = kernels.channel_mean_and_peak(res)
    gate = kernels.spatial_gate(peak, block.attention.sa.conv1.weight)
    with torch.inference_mode():
        assert (gate - block.attention.sa.infer(res)).abs().max().item() < 1e-6


@needs_kernels
def test_gate_and_add_is_the_skip_plus_the_gated_branch_in_place(tiny_model, chelsea):
    _, x, res = block_maps(tiny_model, crop(chelsea, (72, 56), (100, 60)))
    spatial = torch.rand(1, 1, *res.shape[2:])
    channel = torch.rand(1, res.shape[1], 1, 1) * 0.1
    expected = torch.addcmul(x, res * spatial, channel)
    out = kernels.gate_and_add(res, spatial, channel, x)
    assert out.data_ptr() == res.data_ptr()
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


@needs_kernels
def test_a_block_gives_the_same_features_with_the_kernels_and_without(tiny_model, monkeypatch, astronaut):
    block, x, _ = block_maps(tiny_model, crop(astronaut, (96, 80), (60, 200)))
    calls = counted(monkeypatch)
    with torch.inference_mode():
        fused = block.infer(x.clone())
        assert calls == ["stats", "gate"]
        monkeypatch.setattr(kernels, "_library", lambda: None)
        eager = block.infer(x.clone())
    assert (fused - eager).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def bundled() -> MDSR:
    return load_model()


@needs_kernels
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_upscale_gives_the_same_picture_with_the_kernels_and_without(bundled, monkeypatch, coffee, precision):
    image = crop(coffee, (64, 48), (250, 150))
    calls = counted(monkeypatch)
    fused = as_array(upscale(bundled, image, 2, precision=precision)).astype(int)
    assert calls.count("gate") >= 34  # every residual block: 2 before the body, 32 in it
    monkeypatch.setattr(kernels, "_library", lambda: None)
    eager = as_array(upscale(bundled, image, 2, precision=precision)).astype(int)
    assert abs(fused - eager).max() <= 1  # 8-bit levels: the channel sums are added in another order


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_a_machine_with_a_c_compiler_builds_the_kernels(rebuilt, monkeypatch):
    monkeypatch.delenv("MDSR_FUSED_KERNELS", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert kernels.available()  # no silent fall-back to the slower passes


def test_without_a_compiler_the_kernels_are_off_and_a_log_line_says_so(rebuilt, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with caplog.at_level(logging.WARNING, logger="mdsr.kernels"):
        assert not kernels.available()
    assert "no C compiler" in caplog.text


def test_a_compiler_that_fails_turns_the_kernels_off_with_its_message(rebuilt, monkeypatch, tmp_path, caplog):
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\necho 'kernels.c: fatal error: out of cheese' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    with caplog.at_level(logging.WARNING, logger="mdsr.kernels"):
        assert not kernels.available()
    assert "out of cheese" in caplog.text


def test_the_kernels_can_be_switched_off(rebuilt, monkeypatch):
    monkeypatch.setenv("MDSR_FUSED_KERNELS", "0")
    assert not kernels.available()


def test_upscale_runs_where_the_kernels_are_off(tiny_model, monkeypatch, chelsea):
    monkeypatch.setattr(kernels, "_library", lambda: None)
    out = upscale(tiny_model, crop(chelsea, (40, 30)), 2, precision="fp32")
    assert out.size == (80, 60)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.bfloat16(),
        lambda m: m.repeat(2, 1, 1, 1),
        lambda m: m.contiguous(),
        lambda m: m[:, :, :, 1:],
        lambda m: m.clone().requires_grad_(True),
        lambda m: m[:, :, :0],
    ],
    ids=["bf16", "two images", "channels first", "a strided view", "autograd", "no pixels"],
)
def test_maps_the_kernels_cannot_take_are_left_to_the_eager_passes(tiny_model, astronaut, change):
    _, x, res = block_maps(tiny_model, crop(astronaut, (32, 24)))
    assert kernels.fits(res, x)
    assert not kernels.fits(change(res), change(x))


@needs_kernels
@pytest.mark.parametrize("trunk", ["whole", "lean", "streamed"])
def test_each_trunk_runs_the_kernels_and_gives_eagers_result(bundled, monkeypatch, chelsea, trunk):
    lr = as_tensor(crop(chelsea, (72, 60), (200, 100)))
    monkeypatch.setattr(streaming, "BAND_BYTES", 12 * 80 * 64 * 4)  # bands of 12 rows: many band borders
    calls = counted(monkeypatch)
    fused = super_resolve(bundled, lr, 2, precision="fp32", trunk=trunk)
    assert calls
    monkeypatch.setattr(kernels, "_library", lambda: None)
    eager = super_resolve(bundled, lr, 2, precision="fp32", trunk=trunk)
    assert (fused - eager).abs().max().item() < 1e-5


def test_maps_of_two_shapes_are_left_to_the_eager_passes(tiny_model, astronaut):
    _, x, res = block_maps(tiny_model, crop(astronaut, (32, 24)))
    assert not kernels.fits(res, x[:, :, 1:].contiguous(memory_format=torch.channels_last))


@needs_kernels
@pytest.mark.parametrize(
    "call",
    [
        lambda res: kernels.channel_mean_and_peak(res.contiguous()),
        lambda res: kernels.spatial_gate(res[:, :1].double(), torch.ones(1, 1, 7, 7)),
        lambda res: kernels.spatial_gate(res[:, :1].contiguous(), torch.ones(1, 1, 6, 6)),
        lambda res: kernels.gate_and_add(res, torch.ones(1, 1, 3, 3), torch.ones(1, res.shape[1], 1, 1), res),
        lambda res: kernels.gate_and_add(res, torch.ones(1, 1, *res.shape[2:]), torch.ones(1, 1, 1, 1), res),
    ],
    ids=["channels first", "a float64 peak", "an even kernel", "a small spatial gate", "a small channel gate"],
)
def test_the_kernels_refuse_maps_they_would_read_out_of_bounds(tiny_model, coffee, call):
    _, _, res = block_maps(tiny_model, crop(coffee, (24, 20)))
    with pytest.raises(ValueError, match="fused attention kernels take"):
        call(res)


@needs_kernels
def test_many_channels_and_a_large_map_give_the_mean_and_maximum_of_float64():
    torch.manual_seed(0)
    res = (1000 + torch.rand(1, 2048, 200, 180)).contiguous(
        memory_format=torch.channels_last
    )  # offset: float sums drift
    mean, peak = kernels.channel_mean_and_peak(res)
    assert torch.allclose(mean.double(), res.double().mean(dim=(2, 3), keepdim=True), rtol=1e-6, atol=0)
    assert torch.equal(peak, res.amax(dim=1, keepdim=True))


@needs_kernels
def test_a_nan_anywhere_in_a_pixel_makes_its_maximum_nan_as_eagers(tiny_model, chelsea):
    res = block_maps(tiny_model, crop(chelsea, (20, 16)))[2].clone()
    res[0, 0, 3, 4] = float("nan")
    res[0, 7, 5, 6] = float("nan")
    _, peak = kernels.channel_mean_and_peak(res)
    assert peak[0, 0, 3, 4].isnan() and peak[0, 0, 5, 6].isnan()
    assert torch.equal(peak.isnan(), res.amax(dim=1, keepdim=True).isnan())


def test_a_temporary_folder_that_cannot_be_used_leaves_the_eager_passes(rebuilt, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="mdsr.kernels"):
        assert not kernels.available()
    assert "did not build" in caplog.text


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_a_compiler_given_with_arguments_builds_the_kernels(rebuilt, monkeypatch):
    monkeypatch.setenv("CC", "cc -O1")
    assert kernels.available()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_a_compiler_without_openmp_builds_the_plain_kernels(rebuilt, monkeypatch, tmp_path):
    picky = tmp_path / "cc"
    picky.write_text(
        '#!/bin/sh\nfor a; do [ "$a" = -fopenmp ] && { echo "error: unsupported option -fopenmp" >&2; exit 1; }; done\nexec cc "$@"\n'
    )
    picky.chmod(0o755)
    monkeypatch.setenv("CC", str(picky))
    assert kernels.available()
    _, peak = kernels.channel_mean_and_peak(torch.rand(1, 8, 5, 6).contiguous(memory_format=torch.channels_last))
    assert peak.shape == (1, 1, 5, 6)
