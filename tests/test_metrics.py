"""PSNR/SSIM with the literature's protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import BENCHMARK, needs_data

from mdsr.evaluate import load_benchmark
from mdsr.imaging import bicubic_upscale
from mdsr.metrics import psnr, rgb_to_y, ssim


@needs_data
@pytest.mark.parametrize(("scale", "literature"), [(2, 33.66), (3, 30.39), (4, 28.42)])
def test_bicubic_on_set5_matches_the_literature(scale, literature):
    pairs = load_benchmark(BENCHMARK / "Set5", scale)
    mean = np.mean([psnr(bicubic_upscale(p.lr, scale), p.hr, shave=scale) for p in pairs])
    assert abs(mean - literature) <= 0.05


def test_y_channel_uses_bt601_studio_range():
    white, black = np.full((1, 1, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8)
    assert rgb_to_y(white)[0, 0] == pytest.approx(235.0, abs=1e-9)
    assert rgb_to_y(black)[0, 0] == pytest.approx(16.0)


def test_psnr_of_a_known_error(astronaut):
    truth = np.asarray(astronaut)
    noisy = truth.astype(np.int16)
    noisy[::2] += 10  # only rows 0, 2, 4, ... change
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    mse = np.mean((noisy.astype(float) - truth) ** 2)
    assert psnr(noisy, truth, y_channel=False) == pytest.approx(10 * math.log10(255**2 / mse))


def test_identical_images_have_infinite_psnr_and_ssim_one(coffee):
    image = np.asarray(coffee)
    assert psnr(image, image, shave=2) == math.inf
    assert ssim(image, image, shave=2) == pytest.approx(1.0)


def test_the_border_is_shaved_before_measuring(coffee):
    truth = np.asarray(coffee)
    damaged = truth.copy()
    damaged[:3] = 0  # only the top three rows differ
    assert psnr(damaged, truth, shave=3) == math.inf
    assert psnr(damaged, truth, shave=2) < 40


def test_mismatched_sizes_are_an_error(coffee):
    image = np.asarray(coffee)
    with pytest.raises(ValueError, match="ground truth is"):
        psnr(image[:-1], image)


def test_floats_in_0_1_are_refused_rather_than_measured_on_the_wrong_scale():
    truth = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="the output must be 8-bit .* not float32"):
        psnr(np.zeros((16, 16, 3), np.float32), truth)


def test_large_images_measured_in_bands_give_the_whole_images_scores(monkeypatch, astronaut):
    truth = np.asarray(astronaut)[:300, :200]
    noisy = np.clip(truth.astype(int) + np.random.default_rng(0).integers(-9, 10, truth.shape), 0, 255).astype(np.uint8)
    whole = psnr(noisy, truth, shave=2), ssim(noisy, truth, shave=2)
    monkeypatch.setattr("mdsr.metrics.BAND_PIXELS", 7_000)  # bands of 35 rows
    assert (psnr(noisy, truth, shave=2), ssim(noisy, truth, shave=2)) == pytest.approx(whole, abs=1e-12)
