"""Bounded resources of the demo: disk after many requests and across a restart; the memory of the largest
request of each kind that admission lets through, measured in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, call, data_url, running_app
from memory_child import KINDS
from PIL import Image
from sample_files import photo

from demo.workspace import Workspace
from mdsr import serving
from mdsr.serving import DEMO_LIMITS, Item, Request, admit
from mdsr.sizing import Target


def own_gradio_folders(tmp_path: Path) -> dict[str, str]:
    """A subprocess's Gradio uploads and example cache, apart from this run's (its app caches the examples)."""
    return {"GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "GRADIO_EXAMPLES_CACHE": str(tmp_path / "gradio" / "examples")}


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


def test_a_restart_deletes_what_the_previous_process_left_once_it_is_old():
    """The demo's workspace as an earlier process made it, with a result written long ago; the next process's
    workspace (made the same way, over the same upload folder) deletes it."""
    import app

    earlier = app.workspace.__wrapped__()  # what app.workspace() makes, once per process
    result = earlier.new_folder() / "result.png"
    result.write_bytes(b"png")
    for p in (result, result.parent, earlier.folder):
        os.utime(p, (1, 1))  # written long ago
    later = app.workspace.__wrapped__()
    assert not result.exists() and not earlier.folder.exists() and later.folder.exists()
    assert earlier.root == later.root == app.upload_folder()


# --------------------------------------------------------------------------------------------------
# Memory: each kind of request at the largest size admission lets through, in a fresh process
# --------------------------------------------------------------------------------------------------

# The budget over the process's measured memory: inputs of about a quarter of a megapixel; the 12 MP photo's
# decode alone takes ~350 MB.
HEADROOM_MB = {kind: 450 if kind == "region_of_12_mp" else 300 for kind in KINDS}


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_largest_admitted_request_of_each_kind_peaks_within_the_budget(tmp_path, kind):
    """Admission's estimate (the process's resident memory, measured, plus the request's) against the
    peak resident memory of the request run by the demo's own handler in a fresh process."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", **own_gradio_folders(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "memory_child.py"), kind, str(tmp_path), str(HEADROOM_MB[kind])],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["peak_mb"] <= figures["budget_mb"], figures
    assert figures["estimate_mb"] >= figures["budget_mb"] - HEADROOM_MB[kind] / 2, figures  # near the edge it proves


def test_the_demo_takes_a_two_megapixel_photo_at_x2_with_its_ground_truth_and_the_bicubic_view(tmp_path):
    lr, hr = tmp_path / "lr.png", tmp_path / "hr.png"
    Image.new("1", (1632, 1224)).save(lr, optimize=True)  # 2.0 megapixels, 4:3
    Image.new("1", (3264, 2448)).save(hr, optimize=True)
    request = Request((Item("photo.png", str(lr), str(hr)),), Target(factor=2), truth="upload", bicubic=True, views=True)
    assert admit(request, DEMO_LIMITS, resident=RESTING_MB).memory_mb <= DEMO_LIMITS.memory_mb


RESTING_MB = 450  # the demo's process after start-up (measured: 445 MB with Gradio, the weights and their int8 copy)


def test_the_cli_admits_a_12_megapixel_phone_photo_at_x2_with_its_default_limits(tmp_path):
    """Admission only (headers, no work), on the resident memory a fresh CLI process has when it admits."""
    code = "import torch; from mdsr import cli, serving; from mdsr.limits import resident_mb; print(resident_mb())"
    measured = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert measured.returncode == 0, measured.stderr[-2000:]
    photo = tmp_path / "phone.png"
    Image.new("1", (4032, 3024)).save(photo, optimize=True)  # an iPhone's 12.2 megapixels
    request = serving.Request((serving.Item("phone.png", str(photo)),), serving.parse_target(2), each=True)
    admitted = serving.admit(request, serving.CLI_LIMITS, resident=float(measured.stdout.split()[-1]))
    assert [plan.refusal for plan in admitted.plans] == [""]
    assert admitted.plans[0].run.stages[-1].trunk == "streamed"
