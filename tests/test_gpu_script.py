"""The GPU training script, dry-run on the CPU with the tiny preset: a device call must not be the
first time it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, crop

from mdsr.data import _cached_downscale, list_images, warm_lr_cache
from mdsr.imaging import modcrop, read_rgb8
from mdsr.train import FIT_FROM, FIT_TO, TrainConfig, fit_steps, train
from mdsr.weights import load_model


@pytest.fixture
def data_folder(tmp_path, astronaut, coffee, chelsea) -> Path:
    """The layout scripts/prepare_data.sh makes, with the bundled CC0/PD photos."""
    for name, image in (("astronaut", astronaut), ("coffee", coffee)):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
        crop(image, (200, 160)).save(tmp_path / "data" / "train" / name / f"{name}.png")
    (tmp_path / "data" / "val" / "HR").mkdir(parents=True)
    crop(chelsea, (96, 72)).save(tmp_path / "data" / "val" / "HR" / "chelsea.png")
    return tmp_path / "data"


@pytest.mark.slow
def test_the_gpu_script_trains_exports_and_logs_on_a_cpu(data_folder, tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATA": str(data_folder),
        "OUT": str(tmp_path / "out"),
        "RUN": str(tmp_path / "run"),
        "CACHE": str(tmp_path / "cache"),  # never the machine-wide default
        "PRESET": "tiny",
        "STEPS": "150",  # a fixed length: nothing depends on how fast this machine is
        "INIT": "none",
        "BENCH": "0",
        "PRECISION": "fp32",  # the same run on every CPU kind, native bf16 or not
        "BATCH": "2",
        "PATCH": "16",
        "VAL_EVERY": "100",
        "WARMUP": "20",
    }
    done = subprocess.run(
        ["bash", "scripts/train_on_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"weights.safetensors", "best.safetensors", "log.jsonl", "curve.png"}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("val" in r for r in records) and records[-1]["step"] == 150
    assert load_model(out / "best.safetensors").metadata["validation"] == str(data_folder / "val")


def test_fit_steps_ends_the_run_at_the_asked_time():
    cfg = TrainConfig(data=(), out="", fit_minutes=10.0, warmup=FIT_TO)
    # 100 steps in 20 s (5 steps/s), 30 s gone: 570 s left make 2850 more steps.
    assert fit_steps(cfg, step=FIT_TO, elapsed_s=30.0, probe_s=20.0) == FIT_TO + 2850
    assert FIT_TO - FIT_FROM == 100


def test_fit_minutes_needs_a_warmup_that_covers_the_timed_steps(tmp_path):
    with pytest.raises(ValueError, match="--warmup >= 120"):
        train(TrainConfig(data=(str(tmp_path),), out=str(tmp_path / "run"), fit_minutes=1.0, warmup=10))


def test_the_parallel_lr_cache_equals_the_serial_one(data_folder, tmp_path):
    files = list_images([data_folder / "train"])
    warm_lr_cache(files, scales=(2, 3, 4), cache_dir=tmp_path / "parallel", workers=2)
    for path in files:
        hr = modcrop(read_rgb8(path), 12)
        for s in (2, 3, 4):
            serial = _cached_downscale(hr, s, tmp_path / "serial")
            assert np.array_equal(_cached_downscale(hr, s, tmp_path / "parallel"), serial)
    assert len(list((tmp_path / "parallel").iterdir())) == len(files) * 3


def test_prepare_data_holds_out_validation_images_from_training(tmp_path):
    shared = tmp_path / "shared"
    for folder in ("T91", "BSDS500-train", "wallpapers"):
        (shared / "train" / folder).mkdir(parents=True)
    (shared / "train" / "BSDS500-test").mkdir()
    for i in range(40):
        (shared / "train" / "BSDS500-test" / f"{i:03d}.jpg").write_bytes(b"x")
    (shared / "benchmark" / "Set5" / "HR").mkdir(parents=True)
    (shared / "benchmark" / "Set5" / "LR_bicubic_symmetric").mkdir()
    dest = tmp_path / "dest"
    subprocess.run(
        ["bash", "scripts/prepare_data.sh", str(dest), str(shared)], cwd=ROOT, check=True, capture_output=True
    )
    held_out = sorted(p.name for p in (dest / "val" / "HR").iterdir())
    trained = {p.name for p in (dest / "train" / "BSDS500-test").iterdir()}
    assert held_out == ["000.jpg", "020.jpg"] and not trained & set(held_out) and len(trained) == 38
