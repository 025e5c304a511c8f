"""Weights "auto": the published eugenesiow/mdsr-bam where the Hub (or its local cache) has them, else the
bundled ones, always named. Tested offline with a Hugging Face cache laid out as the Hub writes it, holding
checkpoints in super-image's layout made by this project's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY

from mdsr.model import MDSR, MdsrConfig
from mdsr.weights import BUNDLED_NAME, PUBLISHED_ID, WeightStore

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(root: Path, scales=(2, 3, 4)) -> dict[int, MDSR]:
    """models--eugenesiow--mdsr-bam/snapshots/<commit>/{config.json, pytorch_model_{s}x.pt}, refs/main."""
    repo = root / "models--eugenesiow--mdsr-bam"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "MDSR", "n_resblocks": TINY.n_resblocks}))
    models = {}
    for s in scales:
        torch.manual_seed(s)
        models[s] = MDSR(MdsrConfig(**{**TINY.to_dict(), "scales": (s,)})).eval()
        torch.save(models[s].state_dict(), snapshot / f"pytorch_model_{s}x.pt")
    return models


def run_offline(code: str, cache: Path) -> dict:
    """``code`` in a fresh process with HF_HUB_OFFLINE=1 and HF_HUB_CACHE=cache; it prints one JSON line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


STORE_PROBE = """
import json, torch
from mdsr.weights import WeightStore
store = WeightStore()
loaded = store.get("auto", 3)
x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    out = loaded.model(x, 3)
print(json.dumps({"online": store.online, "name": loaded.name, "note": loaded.note, "sum": float(out.sum())}))
"""


def test_offline_with_the_published_weights_cached_auto_uses_them(tmp_path):
    models = fake_hub_cache(tmp_path / "hub")
    got = run_offline(STORE_PROBE, tmp_path / "hub")
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = float(models[3](x, 3).sum())
    assert got["online"] is False and got["name"] == PUBLISHED_ID and got["note"] == ""
    assert got["sum"] == pytest.approx(expected, rel=1e-6)


def test_offline_with_an_empty_cache_auto_uses_the_bundled_weights_and_says_so(tmp_path):
    (tmp_path / "hub").mkdir()
    got = run_offline(STORE_PROBE, tmp_path / "hub")
    assert got["name"] == BUNDLED_NAME and "not reachable" in got["note"] and "not in the local cache" in got["note"]


def test_a_download_that_fails_falls_back_to_the_bundled_weights_with_a_note(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*_a, **_k):
        raise LocalEntryNotFoundError("connection reset")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", unreachable)
    loaded = WeightStore(online=True).get("auto", 2)
    assert loaded.name == BUNDLED_NAME and "could not be loaded" in loaded.note


def test_the_hub_is_asked_once_per_store_not_once_per_scale(monkeypatch, tmp_path):
    """Each probe may wait HUB_TIMEOUT_S: an offline machine with the files cached would wait once per scale."""
    fake_hub_cache(tmp_path / "hub")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    asked = []
    monkeypatch.setattr("mdsr.weights.hub_reachable", lambda *a, **k: asked.append(1) or False)
    store = WeightStore()
    names = {store.get("auto", s).name for s in (2, 3, 4)}
    assert names == {PUBLISHED_ID} and len(asked) == 1


def test_weights_are_loaded_once_and_kept():
    store = WeightStore(online=False)
    assert store.get(None, 2).model is store.get(None, 4).model  # one bundled file holds every scale
    assert store.get("auto", 2) is store.get("auto", 2)


def test_the_api_names_the_weights_that_made_the_picture(tmp_path):
    fake_hub_cache(tmp_path / "hub", scales=(2,))
    code = """
import json
from PIL import Image
from skimage import data
import app
Image.fromarray(data.coffee()[:30, :40]).save("/tmp/mdsr_auto_probe.png")
_, report = app.upscale_api("/tmp/mdsr_auto_probe.png", 2)
_, bundled = app.upscale_api("/tmp/mdsr_auto_probe.png", 2, weights="bundled")
print(json.dumps({"auto": report["weights"], "bundled": bundled["weights"]}))
"""
    got = run_offline(code, tmp_path / "hub")
    assert got == {"auto": PUBLISHED_ID, "bundled": BUNDLED_NAME}


def test_an_unknown_weights_choice_names_the_choices():
    import app

    with pytest.raises(ValueError, match="weights must be 'auto', 'bundled' or 'published'; got 'mine'"):
        app.load_weights("mine", 2)
