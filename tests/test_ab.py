"""A/B mode: weights A (the chosen ones) beside weights B in the slider, the zoom and the error maps, with
PSNR/SSIM of both and their difference when there is a ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT, limited, tiny

from mdsr.weights import save_weights

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def app_module():
    import app

    return app


def ab(app_module, my_file, versus, **overrides):
    args = dict(
        image=str(EXAMPLES / "chelsea_lr_x2.png"), scale=2, gt_mode=app_module.GT_UPLOAD,
        gt_image=str(EXAMPLES / "chelsea.png"), weights=app_module.MINE, self_ensemble=False, precision="fp32",
        auto_zoom=True, zoom_x=50, zoom_y=50, my_file=my_file, versus=versus, progress=lambda *a, **k: None,
    )  # fmt: skip
    return app_module.upscale_ui(**{**args, **overrides})


def test_ab_puts_weights_b_left_and_a_right_with_both_scores_and_the_difference(app_module, tmp_path):
    mine = str(save_weights(tiny(), tmp_path / "mine.safetensors"))
    run = ab(app_module, mine, app_module.BUNDLED)
    (left, right), full, zoom, metrics, maps, info = run.slider, run.output, run.zoom, run.metrics, run.errors, run.info
    bicubic_run = ab(app_module, mine, app_module.VERSUS_BICUBIC)
    bundled_run = ab(app_module, None, app_module.VERSUS_BICUBIC, weights=app_module.BUNDLED)
    assert (
        np.array_equal(left, bundled_run.output)
        and np.array_equal(right, full)
        and np.array_equal(full, bicubic_run.output)
    )
    assert "| A: mine.safetensors |" in metrics and "| B: mdsr-bam-x234.safetensors |" in metrics
    assert "**A − B**" in metrics and "slider:** B: mdsr-bam-x234.safetensors ◀ ▶ A: mine.safetensors" in info
    assert [label for _, label in maps] == [
        "|B: mdsr-bam-x234.safetensors − truth| ×4",
        "|A: mine.safetensors − truth| ×4",
    ]
    assert zoom.shape == (256, 3 * 256 + 2 * 6, 3)


def test_the_difference_is_a_minus_b(app_module, tmp_path):
    mine = str(save_weights(tiny(), tmp_path / "mine.safetensors"))
    metrics = ab(app_module, mine, app_module.BUNDLED).metrics
    rows = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in metrics.splitlines()[2:]}
    a, b = float(rows["A: mine.safetensors"]), float(rows["B: mdsr-bam-x234.safetensors"])
    assert float(rows["**A − B**"].strip("*")) == pytest.approx(a - b, abs=0.011)
    assert b > a  # random tiny weights lose to the trained ones


def test_ab_counts_twice_towards_the_work_limit(app_module, tmp_path, monkeypatch):
    limited(monkeypatch, work_pixels=300_000)  # 450x300 = 135,000 per model
    mine = str(save_weights(tiny(), tmp_path / "mine.safetensors"))
    ab(app_module, mine, app_module.VERSUS_BICUBIC)
    limited(monkeypatch, work_pixels=200_000)
    with pytest.raises(app_module.gr.Error, match=r"450x300 output pixels x 2 passes \(2 models \(A/B\)\) = 270,000"):
        ab(app_module, mine, app_module.BUNDLED)
