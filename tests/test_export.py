"""ONNX export: one file per scale that ONNX Runtime runs to PyTorch's numbers, on any image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import as_tensor, crop, tiny

from mdsr.cli import main
from mdsr.weights import save_weights

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_the_onnx_file_of_each_scale_gives_pytorchs_output_at_any_size(tmp_path, coffee):
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


def test_export_without_its_arguments_is_one_line(tmp_path, capsys):
    assert main(["export", "--onnx", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.strip() == "error: mdsr export --onnx takes one output folder (the weights come with --weights)"
