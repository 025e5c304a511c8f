"""ONNX files of the network, one per scale, for other runtimes and tools (ONNX Runtime, OpenVINO, chaiNNer).

Each file is the bare network as super-image runs it: float RGB (1, 3, H, W) in [0, 1] named ``input``, to
(1, 3, H*s, W*s) named ``output``, not clamped, height and width dynamic; no edge padding and no tiling
(this package's ``upscale`` adds both). Exported with PyTorch's ONNX exporter (opset 18), which needs the
``onnx`` and ``onnxscript`` packages.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from mdsr.files import atomic_path
from mdsr.model import MDSR

OPSET = 18
# Where the exporter and its optimiser log: at INFO a line per step and per initializer merged (hundreds
# for the full model, shown wherever the root logger takes INFO, as the CLI's does), and a warning per
# operator library that is not installed (torchvision).
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


class OneScale(torch.nn.Module):
    """``model`` at one scale, as a module of one input."""

    def __init__(self, model: MDSR, scale: int) -> None:
        super().__init__()
        model.check_scale(scale)
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # the training-time order of operations: no in-place updates in the graph
            return self.model(x, self.scale)


def onnx_path(folder: str | os.PathLike, scale: int) -> Path:
    """Where ``export_onnx`` writes the file of ``scale``."""
    return Path(folder) / f"mdsr_x{scale}.onnx"


def check_outputs(
    paths: Sequence[str | os.PathLike], *, overwrite: bool = False, writer: str = "the export", named: str = ""
) -> None:
    """Refuse now, before any model is loaded, files that could not be written or that would replace
    others: a folder that is a file or cannot be made or written to, a path that is a folder, and (unless
    ``overwrite``) a file that exists. Each refusal is one sentence (a ``ValueError``) naming ``writer``
    (what writes the files) and starting with ``named`` (e.g. the option that gave them)."""
    files = [Path(p) for p in paths]
    for folder in dict.fromkeys(p.parent for p in files):
        check_folder(folder, writer=writer)
    if folders := [p for p in files if p.is_dir()]:
        raise ValueError(f"{named}{folders[0]} is a folder, where {writer} writes a file")
    if (existing := [str(p) for p in files if p.exists()]) and not overwrite:
        them = "it" if len(existing) == 1 else "them"
        raise ValueError(
            f"{named}{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''} "
            f"(--overwrite replaces {them})"
        )


def check_folder(folder: str | os.PathLike, *, writer: str = "the export") -> None:
    """Make ``folder`` (and its parents) and check that a file can be written in it, or say in one sentence
    why not (``writer``: what writes there, as the sentence names it)."""
    folder = Path(folder)
    blocking = next((p for p in (folder, *folder.parents) if _is_file(p)), None)
    if blocking == folder:
        raise ValueError(f"{folder} is a file; {writer} writes into a folder")
    if blocking is not None:
        raise ValueError(f"the folder {folder} cannot be made: {blocking} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
        raise ValueError(f"the folder {folder} cannot be made or written to ({reason})") from None


def _is_file(path: Path) -> bool:
    """Whether something other than a folder is at ``path`` (a path that cannot be looked at is not)."""
    try:
        return path.exists() and not path.is_dir()
    except OSError:
        return False


def export_onnx(
    model: MDSR, folder: str | os.PathLike, scales: list[int] | None = None, *, overwrite: bool = True
) -> list[Path]:
    """Write ``mdsr_x{s}.onnx`` for each scale (default: every scale the model has) into ``folder``; with
    ``overwrite=False`` an existing file is refused (``check_outputs``) before any is written."""
    try:
        import onnx  # noqa: F401 (the exporter needs it)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ValueError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") from err
    scales = scales or list(model.scales)
    check_outputs([onnx_path(folder, s) for s in scales], overwrite=overwrite)
    model = model.eval()
    written = []
    for scale in scales:
        net = OneScale(model, scale).eval()  # a new module is in training mode, and the exporter warns of it
        height, width = torch.export.Dim("height", min=4), torch.export.Dim("width", min=4)
        target = onnx_path(folder, scale)
        with atomic_path(target) as tmp, _quiet_exporter():
            torch.onnx.export(
                net, (torch.rand(1, 3, 32, 32),), str(tmp), input_names=["input"], output_names=["output"],
                opset_version=OPSET, dynamic_shapes={"x": {2: height, 3: width}}, dynamo=True, external_data=False,
            )  # fmt: skip
        written.append(target)
    return written


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter around one export: its progress lines (stdout), its loggers below ERROR, and its
    warnings (training mode, PyTorch's own deprecations), which say nothing about the file written. Its
    errors still raise, and the file's numbers are checked by ``tests/test_export.py``."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
