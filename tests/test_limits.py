"""Bounded resources of the demo: disk after many requests and across a restart; the memory of the largest
request of each kind that admission lets through, measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, call, data_url, running_app
from PIL import Image
from sample_files import photo

from demo.workspace import Workspace
from mdsr.serving import DEMO_LIMITS, Item, RefusedError, Request, admit


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_fifty_requests_leave_disk_use_bounded(monkeypatch):
    import app

    results = Workspace(app.upload_folder() / "mdsr-results-test", keep_s=0)  # everything earlier has aged
    monkeypatch.setattr(app, "workspace", lambda: results)
    cache = app.upload_folder()
    with running_app() as url:
        call(url, [data_url(photo((64, 48))), 2, None, "auto"])
        before = disk_bytes(cache)
        for n in range(50):
            event, payload = call(url, [data_url(photo((64 + n, 48))), 2, None, "auto"])
            assert event == "complete", payload
        result_bytes = Path(json.loads(payload)[0]["path"]).stat().st_size
        assert len(list(results.root.rglob("*.png"))) == 1
        # What stays is the inputs (Gradio ages them out by time) and one result, not 50 results.
        inputs_bytes = sum(len(data_url(photo((64 + n, 48)))["url"]) * 3 // 4 for n in range(50))
        assert disk_bytes(cache) - before <= inputs_bytes + 2 * result_bytes


def test_a_restart_deletes_what_the_previous_process_left_once_it_is_old(tmp_path):
    """One process writes a result and ends; the next one, started later, finds it aged and deletes it."""
    first = """
import os, app
path = app.workspace().new_folder() / "result.png"
path.write_bytes(b"png")
for p in (path, path.parent, app.workspace().folder):
    os.utime(p, (1, 1))  # written long ago
print(path)
"""
    second = "import app; app.workspace(); print(app.workspace().folder)"
    env = {"GRADIO_TEMP_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
            for code in (first, second)]  # fmt: skip
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    left = Path(runs[0].stdout.split()[-1])
    assert not left.exists() and not left.parent.parent.exists() and Path(runs[1].stdout.split()[-1]).exists()


# --------------------------------------------------------------------------------------------------
# Memory: each kind of request at the largest size admission lets through, in a fresh process
# --------------------------------------------------------------------------------------------------

KINDS = {
    # kind: (scale, ground truth, the UI's views, A/B, images)
    "api": (2, "none", False, False, 1),
    "ui_with_truth_x4": (4, "upload", True, False, 1),
    "ab_with_truth": (2, "upload", True, True, 1),
    "batch_with_truths": (2, "upload", False, False, 2),
}


def largest_admitted(tmp_path, kind: str) -> int:
    """The largest square input side that the demo admits for ``kind`` (a 4:3 photo is just as large)."""
    scale, truth, views, ab, count = KINDS[kind]

    def admitted(side: int) -> bool:
        lr, hr = tmp_path / f"lr{side}.png", tmp_path / f"hr{side}.png"
        Image.new("1", (side, side)).save(lr, optimize=True)  # small files that declare the size
        Image.new("1", (side * scale, side * scale)).save(hr, optimize=True)
        items = tuple(Item(f"{n}.png", str(lr), str(hr) if truth == "upload" else None) for n in range(count))
        request = Request(
            items, scale=scale, truth=truth, bicubic=views and not ab, views=views, versus="bundled" if ab else None,
            each=count > 1,
        )  # fmt: skip
        try:
            return not any(plan.refusal for plan in admit(request, DEMO_LIMITS).plans)
        except RefusedError:
            return False

    low, high = 16, 4096
    while high - low > 8:
        mid = (low + high) // 2
        low, high = (mid, high) if admitted(mid) else (low, mid)
    return low


CHILD = """
import json
import numpy as np
from PIL import Image
from skimage import data
import app
from mdsr.imaging import bicubic_downscale
kind, side, scale, folder = {kind!r}, {side}, {scale}, {folder!r}
for n in range(2):
    hr = np.asarray(Image.fromarray(data.coffee()).resize((side * scale, side * scale), Image.LANCZOS))
    Image.fromarray(hr).save(f"{{folder}}/hr{{n}}.png")
    Image.fromarray(bicubic_downscale(hr, scale)).save(f"{{folder}}/lr{{n}}.png")
del hr
lr, hr = f"{{folder}}/lr0.png", f"{{folder}}/hr0.png"
none = lambda *a, **k: None
ui = dict(weights=app.BUNDLED, self_ensemble=False, precision="auto", auto_zoom=True, zoom_x=50, zoom_y=50, progress=none)
if kind == "api":
    app.upscale_api(lr, scale)
elif kind == "ui_with_truth_x4":
    app.upscale_ui(image=lr, scale=scale, gt_mode=app.GT_UPLOAD, gt_image=hr, **ui)
elif kind == "ab_with_truth":
    app.upscale_ui(image=lr, scale=scale, gt_mode=app.GT_UPLOAD, gt_image=hr, versus=app.AUTO, **ui)
else:
    app.batch_ui([lr, f"{{folder}}/lr1.png"], scale, [hr, f"{{folder}}/hr1.png"], app.BUNDLED, "auto", progress=none)
print(json.dumps(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_the_largest_admitted_request_of_each_kind_peaks_within_the_budget(tmp_path, kind):
    side = largest_admitted(tmp_path, kind)
    code = CHILD.format(kind=kind, side=side, scale=KINDS[kind][0], folder=str(tmp_path))
    env = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.split()[-1]) <= DEMO_LIMITS.memory_mb


def test_the_demo_takes_a_two_megapixel_photo_at_x2_with_its_ground_truth_and_the_bicubic_view(tmp_path):
    lr, hr = tmp_path / "lr.png", tmp_path / "hr.png"
    Image.new("1", (1632, 1224)).save(lr, optimize=True)  # 2.0 megapixels, 4:3
    Image.new("1", (3264, 2448)).save(hr, optimize=True)
    request = Request((Item("photo.png", str(lr), str(hr)),), scale=2, truth="upload", bicubic=True, views=True)
    assert admit(request, DEMO_LIMITS).memory_mb <= DEMO_LIMITS.memory_mb
