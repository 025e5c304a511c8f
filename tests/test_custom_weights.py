"""Your own weights in the demo: an uploaded .safetensors (mdsr train / export) or super-image .pt, or one
from MDSR_WEIGHTS_DIR, loaded safely and strictly, named with its provenance; wrong files get a sentence."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import ROOT, super_image_folder, tiny

from mdsr.imaging import preview_rgb, read_image
from mdsr.inference import upscale_picture
from mdsr.weights import WeightsError, WeightStore, describe, save_weights, weights_in_folder

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def app_module():
    import app

    return app


def run_mine(app_module, my_file=None, my_listed=None, scale=2):
    return app_module.upscale_ui(
        image=str(EXAMPLES / "chelsea_lr_x2.png"), scale=scale, gt_mode=app_module.GT_NONE, gt_image=None,
        weights=app_module.MINE, self_ensemble=False, precision="fp32", auto_zoom=True, zoom_x=50, zoom_y=50,
        my_file=my_file, my_listed=my_listed, progress=lambda *a, **k: None,
    )  # fmt: skip


def test_an_uploaded_safetensors_file_runs_and_is_named_with_its_provenance(app_module, tmp_path):
    path = save_weights(tiny(), tmp_path / "mine.safetensors", metadata={"note": "fine-tuned on cats", "steps": 300})
    outputs = run_mine(app_module, my_file=str(path))
    expected, _ = upscale_picture(tiny(), read_image(str(EXAMPLES / "chelsea_lr_x2.png")), 2, precision="fp32")
    assert np.array_equal(outputs.output, preview_rgb(expected))
    assert "mine.safetensors weights — fine-tuned on cats; 300 steps" in outputs.info


def test_a_super_image_pt_file_runs(app_module, tmp_path):
    folder = super_image_folder(tmp_path / "si", tiny(scales=(2,)), 2)
    outputs = run_mine(app_module, my_file=str(folder / "pytorch_model_2x.pt"))
    assert outputs.output.shape == (300, 450, 3) and "pytorch_model_2x.pt weights" in outputs.info


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.safetensors", b"not weights at all", "is not a readable safetensors file"),
        ("weights.bin", b"\0" * 10, "weights must be a .safetensors file"),
        ("evil.pt", pickle.dumps(print), "is not a plain weights file that loads safely"),
        ("dict.pt", None, "these are not MDSR weights"),
    ],
)
def test_a_wrong_weights_file_is_a_clear_error(app_module, tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        torch.save({"conv.weight": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(app_module.gr.Error, match=message):
        run_mine(app_module, my_file=str(path))


def test_weights_of_the_wrong_scale_say_which_scales_they_hold(app_module, tmp_path):
    path = save_weights(tiny(scales=(2,)), tmp_path / "x2only.safetensors")
    with pytest.raises(app_module.gr.Error, match=r"scale"):
        run_mine(app_module, my_file=str(path), scale=4)


def test_choosing_my_weights_without_a_file_says_what_to_do(app_module):
    with pytest.raises(app_module.gr.Error, match="choose your weights: upload a .safetensors or .pt file"):
        run_mine(app_module)


def test_weights_over_the_size_limit_are_refused_with_the_limit(tmp_path):
    path = save_weights(tiny(), tmp_path / "big.safetensors")
    with pytest.raises(WeightsError, match=r"big.safetensors is [\d,]+ bytes; the limit for weights is 1,000"):
        WeightStore(online=False).get_file(path, 2, max_bytes=1000)


def test_the_folder_lists_safetensors_files_with_their_provenance(tmp_path):
    save_weights(tiny(), tmp_path / "b.safetensors", metadata={"note": "run b"})
    save_weights(tiny(), tmp_path / "a.safetensors")
    (tmp_path / "readme.txt").write_text("not weights")
    assert [p.name for p in weights_in_folder(tmp_path)] == ["a.safetensors", "b.safetensors"]
    assert describe(tmp_path / "b.safetensors") == "run b" and weights_in_folder(None) == []


def test_a_file_from_the_folder_is_picked_by_name_only(app_module, tmp_path, monkeypatch):
    save_weights(tiny(), tmp_path / "listed.safetensors", metadata={"note": "from the folder"})
    monkeypatch.setenv("MDSR_WEIGHTS_DIR", str(tmp_path))
    assert "listed.safetensors weights — from the folder" in run_mine(app_module, my_listed="listed.safetensors").info


def test_uploaded_weights_are_kept_for_a_few_files_only(tmp_path):
    store = WeightStore(online=False)
    paths = [save_weights(tiny(), tmp_path / f"w{i}.safetensors") for i in range(WeightStore.MAX_FILES + 2)]
    first = store.get_file(paths[0], 2, max_bytes=10**8)
    assert store.get_file(paths[0], 2, max_bytes=10**8) is first
    for p in paths[1:]:
        store.get_file(p, 2, max_bytes=10**8)
    assert store.get_file(paths[0], 2, max_bytes=10**8) is not first  # dropped, then loaded again
