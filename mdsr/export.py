"""ONNX files of the network, one per scale, for other runtimes and tools (ONNX Runtime, OpenVINO, chaiNNer).

Each file is the bare network as super-image runs it: float RGB (1, 3, H, W) in [0, 1] named ``input``, to
(1, 3, H*s, W*s) named ``output``, not clamped, height and width dynamic; no edge padding and no tiling
(this package's ``upscale`` adds both). Exported with PyTorch's ONNX exporter (opset 18), which needs the
``onnx`` and ``onnxscript`` packages.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch

from mdsr.files import atomic_path
from mdsr.model import MDSR

OPSET = 18


class OneScale(torch.nn.Module):
    """``model`` at one scale, as a module of one input."""

    def __init__(self, model: MDSR, scale: int) -> None:
        super().__init__()
        model.check_scale(scale)
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # the training-time order of operations: no in-place updates in the graph
            return self.model(x, self.scale)


def export_onnx(model: MDSR, folder: str | os.PathLike, scales: list[int] | None = None) -> list[Path]:
    """Write ``mdsr_x{s}.onnx`` for each scale (default: every scale the model has) into ``folder``."""
    try:
        import onnx  # noqa: F401 (the exporter needs it)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise RuntimeError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") from err
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    written = []
    for scale in scales or list(model.scales):
        net = OneScale(model, scale)
        height, width = torch.export.Dim("height", min=4), torch.export.Dim("width", min=4)
        target = folder / f"mdsr_x{scale}.onnx"
        with atomic_path(target) as tmp, contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            torch.onnx.export(
                net, (torch.rand(1, 3, 32, 32),), str(tmp), input_names=["input"], output_names=["output"],
                opset_version=OPSET, dynamic_shapes={"x": {2: height, 3: width}}, dynamo=True, external_data=False,
            )  # fmt: skip
        written.append(target)
    return written
