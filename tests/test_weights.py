"""Weights: this project's safetensors, super-image folders, the Hub (mocked), strict and safe loads."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import super_image_folder, tiny

from mdsr import weights
from mdsr.model import MDSR, MdsrConfig
from mdsr.weights import WeightsError, load_model, read_metadata, save_weights


def same_weights(a: MDSR, b: MDSR) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip_keeps_weights_config_and_provenance(tmp_path):
    model = tiny()
    path = save_weights(model, tmp_path / "w.safetensors", metadata={"steps": 12, "data": ["T91"]})
    loaded = load_model(path)
    assert loaded.config == model.config and same_weights(loaded, model)
    assert json.loads(read_metadata(path)["steps"]) == 12


def test_fp16_storage_loads_back_as_float32(tmp_path):
    path = save_weights(tiny(), tmp_path / "w16.safetensors", dtype=torch.float16)
    assert next(load_model(path).parameters()).dtype == torch.float32


def test_super_image_folder_loads_and_its_mean_shift_is_ignored(tmp_path):
    model = tiny(scales=(3,))
    folder = super_image_folder(tmp_path / "mdsr-bam", model, 3)
    assert same_weights(load_model(folder, scale=3), model)


def test_every_source_records_where_its_weights_came_from(tmp_path):
    saved = load_model(save_weights(tiny(), tmp_path / "w.safetensors", metadata={"note": "mine"}))
    checkpoint = load_model(super_image_folder(tmp_path / "mdsr-bam", tiny(scales=(3,)), 3), scale=3)
    assert tiny().metadata == {} and saved.metadata["note"] == "mine"
    assert checkpoint.metadata["format"] == "super-image" and checkpoint.metadata["file"] == "pytorch_model_3x.pt"
    assert MdsrConfig.from_dict(json.loads(checkpoint.metadata["config"])) == checkpoint.config


def test_a_missing_scale_in_a_folder_names_what_is_there(tmp_path):
    folder = super_image_folder(tmp_path / "mdsr-bam", tiny(scales=(2,)), 2)
    with pytest.raises(WeightsError, match="no pytorch_model_4x.pt .*pytorch_model_2x.pt"):
        load_model(folder, scale=4)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = tiny(scales=(2,)).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["tail.0.0.bias"]
    with pytest.raises(WeightsError, match=r"missing keys tail\.0\.0\.bias; unexpected keys extra\.weight"):
        weights.model_from_state(tiny(scales=(2,)).config, state, "test")


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['EXPLOIT_MARKER'])}",))


def test_a_pickle_that_carries_code_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    path = tmp_path / "pytorch_model_2x.pt"
    with open(path, "wb") as f:
        pickle.dump({"head.0.0.weight": Exploit()}, f)
    with pytest.raises(WeightsError, match="not a plain weights file"):
        load_model(path)
    assert not marker.exists()


def test_bundled_weights_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "BUNDLED_PATH", tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError, match="bundled weights .* are not in this installation"):
        load_model()


def test_hub_ids_download_the_super_image_layout(monkeypatch, tmp_path):
    model = tiny(scales=(2,))
    folder = super_image_folder(tmp_path / "hub", model, 2)
    calls = []

    def fake_download(repo_id, filename, **_kwargs):
        calls.append((repo_id, filename))
        return str(folder / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert same_weights(load_model("eugenesiow/mdsr-bam", scale=2), model)
    assert calls == [("eugenesiow/mdsr-bam", "config.json"), ("eugenesiow/mdsr-bam", "pytorch_model_2x.pt")]


def test_an_unreachable_hub_says_what_failed_and_what_works_offline(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*_args, **_kwargs):
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(
        WeightsError, match="could not download eugenesiow/mdsr-bam .* bundled weights or a local folder work offline"
    ):
        load_model("eugenesiow/mdsr-bam", scale=2)


def test_a_missing_folder_written_as_a_path_is_said_to_be_missing_not_looked_for_on_the_hub(tmp_path):
    with pytest.raises(WeightsError, match="^no such file or folder: mydir$"):
        load_model(str(tmp_path / "mydir"), scale=2)


def test_an_unreachable_hub_is_said_once_and_at_once(tmp_path):
    from conftest import free_port

    # A Hub address on this machine where nothing listens: refused at once, never the network.
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    argv = [sys.executable, "-m", "mdsr", "upscale", str(Path(__file__).parents[1] / "examples" / "chelsea_lr_x2.png"),
            "-s", "2", "-o", str(tmp_path / "out"), "--weights", "someuser/somerepo"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: could not download someuser/somerepo from the Hugging Face Hub (offline or unreachable); "
        "the bundled weights or a local folder work offline"
    ]


def test_hf_hub_offline_is_honoured_without_touching_the_network(tmp_path):
    code = (
        "import mdsr\n"
        "try:\n    mdsr.load_model('eugenesiow/mdsr-bam', scale=2)\n"
        "except mdsr.WeightsError as e:\n    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert "offline or unreachable" in out.stdout
