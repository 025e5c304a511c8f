"""Bounded resources of the demo: disk after many requests; memory of large requests in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, call, data_url, running_app
from sample_files import photo

from mdsr.limits import estimated_peak_mb


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_fifty_requests_leave_disk_use_bounded(monkeypatch):
    import gradio as gr

    import app

    monkeypatch.setattr(app, "KEEP_RESULTS_S", 0)  # as if every earlier result had aged out
    cache = Path(gr.utils.get_upload_folder())
    with running_app() as url:
        call(url, [data_url(photo((64, 48))), 2, None, "auto"])
        before = disk_bytes(cache)
        for n in range(50):
            event, payload = call(url, [data_url(photo((64 + n, 48))), 2, None, "auto"])
            assert event == "complete", payload
        result_bytes = Path(json.loads(payload)[0]["path"]).stat().st_size
        assert len(list(app.OUTPUT_DIR.glob("*.png"))) == 1
        # What stays is the inputs (Gradio ages them out by time) and one result, not 50 results.
        inputs_bytes = sum(len(data_url(photo((64 + n, 48)))["url"]) * 3 // 4 for n in range(50))
        assert disk_bytes(cache) - before <= inputs_bytes + 2 * result_bytes


@pytest.mark.slow
def test_the_largest_api_request_peaks_under_1_5_gb(tmp_path):
    """A fresh process runs what the API runs for the largest accepted input at x2, and reports its peak."""
    import app

    side = int(app.MAX_INPUT_PIXELS**0.5)  # the largest accepted square, at x2 (x4 of it is over the output cap)
    code = f"""
from PIL import Image
import numpy as np
import app
Image.fromarray(np.random.default_rng(0).integers(0, 255, ({side}, {side}, 3), dtype=np.uint8)).save({str(tmp_path / "big.png")!r})
app.run_comparison({str(tmp_path / "big.png")!r}, scale=2, gt_mode=app.GT_NONE, gt_image=None, weights=app.BUNDLED,
                   self_ensemble=False, precision="auto", progress=lambda *a, **k: None, with_bicubic=False)
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) <= 1536


def test_a_request_over_the_memory_estimate_is_refused_before_any_work(tmp_path):
    import app

    photo((400, 300)).save(tmp_path / "lr.png")  # photo() pads: only the size matters here
    big = app.read_image(str(tmp_path / "lr.png"))
    assert estimated_peak_mb(1000 * 1000, 16_000_000, full_views=True) > app.MAX_REQUEST_MB
    side = 620  # x4 with the bicubic view: 410 + 850e-6 * 384,400 + 140e-6 * 6,150,400 = 1,598 MB
    photo((side, side)).save(tmp_path / "big.png")
    with pytest.raises(app.gr.Error, match=r"a 620x620 image at 4x with the bicubic view .* about 1,598 MB; the limit"):
        app.run_comparison(
            str(tmp_path / "big.png"), scale=4, gt_mode=app.GT_NONE, gt_image=None, weights=app.BUNDLED,
            self_ensemble=False, precision="auto", progress=lambda *a, **k: None,
        )  # fmt: skip
    assert big.size == (400, 300)


@pytest.mark.slow
def test_the_largest_ground_truth_request_at_4x_peaks_under_1_5_gb(tmp_path):
    """A fresh process runs the UI's handler with a ground truth on the largest square input the memory
    estimate accepts at x4, and reports its peak."""
    import app

    side = max(
        s for s in range(16, 2000, 8) if estimated_peak_mb(s * s, 16 * s * s, full_views=True) <= app.MAX_REQUEST_MB
    )
    code = f"""
import numpy as np
from PIL import Image
import app
from mdsr.imaging import bicubic_downscale
hr = np.random.default_rng(0).integers(0, 255, ({side} * 4, {side} * 4, 3), dtype=np.uint8)
Image.fromarray(hr).save({str(tmp_path / "hr.png")!r})
Image.fromarray(bicubic_downscale(hr, 4)).save({str(tmp_path / "lr.png")!r})
del hr
app.upscale_ui(image={str(tmp_path / "lr.png")!r}, scale=4, gt_mode=app.GT_UPLOAD, gt_image={str(tmp_path / "hr.png")!r},
               weights=app.BUNDLED, self_ensemble=False, precision="auto", auto_zoom=True, zoom_x=50, zoom_y=50,
               progress=lambda *a, **k: None)
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) <= 1536
