"""The shipped weights: they load, they carry their provenance, and they beat bicubic by a margin that a
regression could not keep (Set5 when ../shared/data is there; the bundled CC0 / public-domain examples always)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import BENCHMARK, ROOT, needs_data, super_resolve_8bit

import mdsr
from mdsr.evaluate import load_benchmark
from mdsr.imaging import bicubic_downscale, bicubic_upscale, modcrop, read_rgb8
from mdsr.inference import super_resolve
from mdsr.metrics import psnr
from mdsr.weights import BUNDLED_PATH, read_metadata

# Measured with `mdsr evaluate` on the shipped file, minus 0.05 dB of slack (see the README's table).
SET5_X2_FLOOR = 36.85  # 36.91 measured
# Gains over bicubic on the examples, measured on the shipped file, minus 0.1 dB of slack.
EXAMPLE_GAIN_FLOOR = {2: 1.06, 3: 1.27, 4: 1.91}  # 1.16, 1.37, 2.01 dB measured
EXAMPLES = {2: "chelsea", 3: "coffee", 4: "astronaut"}


@pytest.fixture(scope="module")
def model():
    return mdsr.load_model()


def test_the_shipped_file_holds_all_scales_and_its_provenance(model):
    assert model.scales == (2, 3, 4) and model.config == mdsr.MdsrConfig()
    meta = read_metadata(BUNDLED_PATH)
    assert json.loads(meta["steps"]) > 0 and meta["git_commit"] and json.loads(meta["data"])
    assert BUNDLED_PATH.stat().st_size <= 16 * 2**20


def example_pair(scale: int) -> tuple[np.ndarray, np.ndarray]:
    hr = modcrop(read_rgb8(ROOT / "examples" / f"{EXAMPLES[scale]}.png"), scale)
    return bicubic_downscale(hr, scale), hr


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_shipped_weights_beat_bicubic_on_a_bundled_photo(model, scale):
    lr, hr = example_pair(scale)
    ours = psnr(super_resolve_8bit(model, lr, scale, precision="fp32"), hr, shave=scale)
    bicubic = psnr(bicubic_upscale(lr, scale), hr, shave=scale)
    assert ours - bicubic >= EXAMPLE_GAIN_FLOOR[scale]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_flat_grey_stays_flat_out_to_the_corners(model, scale):
    # Zero padding inside the network darkens corners (to 0.25 here) unless the input's edge is replicated.
    out = super_resolve(model, torch.full((1, 3, 40, 48), 0.5), scale, precision="fp32")
    assert (out - 0.5).abs().max() < 0.01


def test_tiled_inference_costs_no_psnr_with_the_shipped_weights(model):
    lr, hr = example_pair(4)
    whole = psnr(super_resolve_8bit(model, lr, 4, precision="fp32"), hr, shave=4)
    tiled = psnr(super_resolve_8bit(model, lr, 4, tile=40, precision="fp32"), hr, shave=4)
    assert abs(whole - tiled) < 0.01


@needs_data
def test_set5_x2_psnr_does_not_regress(model):
    pairs = load_benchmark(BENCHMARK / "Set5", 2)
    with torch.inference_mode():
        score = np.mean([psnr(super_resolve_8bit(model, p.lr, 2, precision="fp32"), p.hr, shave=2) for p in pairs])
    assert score >= SET5_X2_FLOOR
    assert score > 33.66 + 3.0  # bicubic's 33.66 dB
