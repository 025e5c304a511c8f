"""ONNX export: one file per scale that ONNX Runtime runs to PyTorch's numbers, on any image size."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import as_tensor, crop, tiny

from mdsr.cli import main
from mdsr.export import export_onnx
from mdsr.weights import save_weights


@pytest.fixture
def ort():
    """ONNX Runtime, where it and the exporter's packages are installed (else the test is skipped)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


@pytest.fixture
def no_model_loaded(monkeypatch):
    """Any model loaded fails the test: what these refuse is refused before the work."""

    def load(*args, **kwargs):
        pytest.fail("a model was loaded before the outputs were checked")

    monkeypatch.setattr("mdsr.weights.load_for_scales", load)
    monkeypatch.setattr("mdsr.train.load_checkpoint", load)


def test_the_onnx_file_of_each_scale_gives_pytorchs_output_at_any_size(tmp_path, coffee, ort):
    weights = save_weights(tiny(), tmp_path / "tiny.safetensors")
    assert main(["export", "--onnx", str(tmp_path / "onnx"), "--weights", str(weights), "--scales", "2", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["mdsr_x2.onnx", "mdsr_x3.onnx"]
    lr = as_tensor(crop(coffee, (45, 31)))  # odd sizes, other than the one exported with
    for scale in (2, 3):
        session = ort.InferenceSession(str(tmp_path / "onnx" / f"mdsr_x{scale}.onnx"))
        (out,) = session.run(None, {"input": lr.numpy()})
        with torch.no_grad():
            expected = tiny()(lr, scale).numpy()
        assert out.shape == (1, 3, 31 * scale, 45 * scale) and np.abs(out - expected).max() < 1e-4


def test_the_network_is_exported_in_eval_mode(tmp_path, ort, monkeypatch):
    modes = []
    export = torch.onnx.export

    def spy(module, *args, **kwargs):
        modes.append(module.training)
        return export(module, *args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    export_onnx(tiny(), tmp_path, [2])
    assert modes == [False]


def test_the_export_says_only_which_files_it_wrote(tmp_path, ort, capsys, caplog, recwarn):
    caplog.set_level(logging.INFO)  # as the CLI's root logger: the exporter's INFO lines would show
    weights = save_weights(tiny(), tmp_path / "tiny.safetensors")
    assert main(["export", "--onnx", str(tmp_path / "onnx"), "--weights", str(weights), "--scales", "2"]) == 0
    assert capsys.readouterr() == (f"onnx: {tmp_path / 'onnx' / 'mdsr_x2.onnx'}\n", "")
    assert [record.getMessage() for record in caplog.records] == []
    assert [str(warning.message) for warning in recwarn] == []


def test_export_without_its_arguments_is_one_line(tmp_path, capsys):
    assert main(["export", "--onnx", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: mdsr export --onnx takes one output folder (the weights come with --weights)"
    )


def test_an_existing_onnx_file_is_kept_unless_overwrite_is_given(tmp_path, capsys, no_model_loaded):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "mdsr_x3.onnx").write_bytes(b"mine")
    assert main(["export", "--onnx", str(tmp_path / "onnx"), "--scales", "2", "3"]) == 2
    kept = tmp_path / "onnx" / "mdsr_x3.onnx"
    assert capsys.readouterr().err.strip() == f"error: {kept} already exists (--overwrite replaces it)"
    assert kept.read_bytes() == b"mine" and not (tmp_path / "onnx" / "mdsr_x2.onnx").exists()


def test_overwrite_replaces_an_existing_onnx_file(tmp_path, ort):
    weights = save_weights(tiny(), tmp_path / "tiny.safetensors")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "mdsr_x2.onnx").write_bytes(b"old")
    argv = ["export", "--onnx", str(tmp_path / "onnx"), "--weights", str(weights), "--scales", "2", "--overwrite"]
    assert main(argv) == 0
    ort.InferenceSession(str(tmp_path / "onnx" / "mdsr_x2.onnx"))  # a real ONNX file, not the old bytes


def test_an_onnx_folder_that_is_a_file_is_one_sentence(tmp_path, capsys, no_model_loaded):
    (tmp_path / "onnx").write_bytes(b"a file")
    assert main(["export", "--onnx", str(tmp_path / "onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'onnx'} is a file; the export writes into a folder"


def test_an_onnx_folder_under_a_file_is_one_sentence(tmp_path, capsys, no_model_loaded):
    (tmp_path / "notes").write_bytes(b"a file")
    assert main(["export", "--onnx", str(tmp_path / "notes" / "onnx")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: the folder {tmp_path / 'notes' / 'onnx'} cannot be made: {tmp_path / 'notes'} is a file"
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux's /proc")
def test_an_onnx_folder_that_cannot_be_made_is_one_sentence(capsys, no_model_loaded):
    assert main(["export", "--onnx", "/proc/mdsr_onnx"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the folder /proc/mdsr_onnx cannot be made or written to (no such file or directory)"
    )


def test_an_existing_weights_file_is_kept_unless_overwrite_is_given(tmp_path, capsys, no_model_loaded):
    (tmp_path / "mine.safetensors").write_bytes(b"mine")
    assert main(["export", str(tmp_path / "last.pt"), str(tmp_path / "mine.safetensors")]) == 2
    existing = tmp_path / "mine.safetensors"
    assert capsys.readouterr().err.strip() == f"error: {existing} already exists (--overwrite replaces it)"
    assert existing.read_bytes() == b"mine"


@pytest.mark.parametrize("name", ["w.pt", "weights"])
def test_a_weights_file_not_named_safetensors_is_refused_before_writing(tmp_path, capsys, no_model_loaded, name):
    out = tmp_path / name
    assert main(["export", str(tmp_path / "last.pt"), str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {out}: the weights file's name must end in .safetensors"
    assert not out.exists()


@pytest.mark.parametrize("spelling", ["same", "dot-dot", "symlink"])
def test_overwrite_never_replaces_the_checkpoint_being_exported(tmp_path, capsys, no_model_loaded, spelling):
    checkpoint = tmp_path / "run" / "last.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"a checkpoint")
    out = {
        "same": checkpoint,
        "dot-dot": tmp_path / "run" / ".." / "run" / "last.safetensors",
        "symlink": tmp_path / "link.safetensors",
    }[spelling]
    if spelling == "symlink":
        out.symlink_to(checkpoint)
    assert main(["export", str(checkpoint), str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out} is the checkpoint being exported, never replaced; write to another file"
    )
    assert checkpoint.read_bytes() == b"a checkpoint"
