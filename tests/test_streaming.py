"""The streamed trunk: whole-image features in the memory of one map, equal to whole-image inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, as_tensor, crop, tiny
from sample_files import photo

from mdsr import streaming
from mdsr.imaging import array_to_tensor, read_rgb8, tensor_to_array, to_uint
from mdsr.inference import EDGE_PADDING, super_resolve
from mdsr.metrics import psnr
from mdsr.quantize import int8_available, int8_model
from mdsr.streaming import BorderSums, FeatureMap, StreamedTrunk
from mdsr.weights import load_model

EXAMPLES = ROOT / "examples"


@pytest.fixture
def small_stripes(monkeypatch):
    """Bands of 12 rows and chunks of ~30 columns on these small images, so that every test crosses many
    band and chunk borders."""
    monkeypatch.setattr(streaming, "BAND_BYTES", 12 * 128 * 16 * 4)  # 12 rows of 128 columns of 16 channels
    monkeypatch.setattr(streaming, "CHUNK_PIXELS", 22 * 40)


def whole_features(model, lr, scale):
    padded = torch.nn.functional.pad(lr, (EDGE_PADDING,) * 4, mode="replicate")
    with torch.inference_mode():
        return model.infer_features(padded.contiguous(memory_format=torch.channels_last), scale)


def test_a_conv_mean_from_border_sums_equals_the_mean_of_the_convolution():
    torch.manual_seed(0)
    h = torch.rand(1, 5, 23, 17)
    conv = torch.nn.Conv2d(5, 4, 3, padding=1)
    sums = BorderSums(23, 17)
    for y0 in range(0, 23, 6):  # in blocks, as the statistics sweep gathers them
        for x0 in range(0, 17, 5):
            sums.add(h[:, :, y0 : y0 + 6, x0 : x0 + 5], y0, x0)
    expected = conv(h).mean(dim=(2, 3), keepdim=True).detach()
    assert torch.allclose(sums.conv_mean(conv.weight.detach(), conv.bias.detach(), 1.0), expected, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_streamed_features_equal_whole_image_features_in_fp32(small_stripes, chelsea, scale):
    model, lr = tiny(), as_tensor(crop(chelsea, (90, 70), (200, 100)))
    with torch.inference_mode():
        streamed = StreamedTrunk(model, lr, scale, pad=EDGE_PADDING).features().tensor
    assert torch.allclose(streamed, whole_features(model, lr, scale), atol=1e-5)


@pytest.mark.parametrize("trunk", ["streamed", "lean"])
def test_each_bounded_trunk_gives_the_whole_image_result_with_the_bundled_weights(small_stripes, coffee, trunk):
    model, lr = load_model(), as_tensor(crop(coffee, (120, 80), (250, 120)))
    whole = super_resolve(model, lr, 2, precision="fp32", trunk="whole")
    bounded = super_resolve(model, lr, 2, precision="fp32", trunk=trunk)
    assert (bounded - whole).abs().max().item() < 1e-5


@pytest.mark.parametrize("scale, stripe", [(2, None), (4, 16)])
def test_lean_features_equal_whole_image_features_in_fp32(small_stripes, chelsea, scale, stripe):
    model, lr = tiny(), as_tensor(crop(chelsea, (90, 70), (200, 100)))
    with torch.inference_mode():
        lean = streaming.LeanTrunk(model, lr, scale, pad=EDGE_PADDING, stripe=stripe).features().tensor
    assert torch.allclose(lean, whole_features(model, lr, scale), atol=1e-5)


@pytest.mark.skipif(not int8_available(), reason="this PyTorch has no oneDNN int8 convolution")
@pytest.mark.parametrize("trunk", ["streamed", "lean"])
def test_bounded_int8_equals_whole_image_int8_up_to_rounding(small_stripes, trunk):
    """The same quantisation ranges, so the same integers except where a float summed in another order
    crosses a rounding boundary: a change of at most one 8-bit level, and none in PSNR."""
    model = int8_model(load_model())
    hr = read_rgb8(EXAMPLES / "chelsea.png")[:120, :160]
    lr = array_to_tensor(hr[::2, ::2])
    whole, streamed = (
        to_uint(tensor_to_array(super_resolve(model, lr, 2, precision="int8", trunk=t))) for t in ("whole", trunk)
    )
    assert np.abs(whole.astype(int) - streamed).max() <= 1
    assert abs(psnr(whole, hr, shave=2) - psnr(streamed, hr, shave=2)) < 0.002


@pytest.mark.skipif(not int8_available(), reason="this PyTorch has no oneDNN int8 convolution")
def test_a_block_past_its_calibrated_relu_scale_takes_the_maps_own_range_as_whole_inference_does(small_stripes):
    model = int8_model(tiny(scales=(2,)), calibration=[torch.full((1, 3, 8, 8), 0.01)])  # far too small a range
    lr = as_tensor(photo((60, 40)))
    with torch.inference_mode():
        streamed = StreamedTrunk(model, lr, 2, pad=EDGE_PADDING).features().tensor
    whole = whole_features(model, lr, 2)
    assert (streamed - whole).abs().max().item() < 0.02 * whole.abs().max().item()


def test_progress_counts_every_block_and_tile_once(small_stripes, chelsea):
    model, lr, seen = tiny(), as_tensor(crop(chelsea, (40, 30))), []
    super_resolve(model, lr, 2, tile=16, trunk="streamed", progress=lambda n, total: seen.append((n, total)))
    total = 2 + 2 + 2 + 6  # head, 2 pre-process blocks, 2 body blocks, body end; 3 x 2 tiles
    assert seen == [(n, total) for n in range(1, total + 1)]


def test_a_feature_map_gives_back_the_memory_of_rows_it_has_passed():
    def resident_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    fmap = FeatureMap(64, 1024, 1024)  # 256 MB
    fmap.tensor.fill_(1.0)
    full = resident_mb()
    fmap.release_above(768)
    assert full - resident_mb() > 150
    assert fmap.tensor[0, 0, 900, 0].item() == 1.0  # rows below are untouched
