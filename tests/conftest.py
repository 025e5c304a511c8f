"""Shared test fixtures: real images (scikit-image's bundled, public domain), tiny models, and the
research data beside the checkout when present."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from mdsr.imaging import array_to_tensor, read_rgb8, tensor_to_array, to_uint
from mdsr.inference import CpuKind, super_resolve
from mdsr.model import MDSR, MdsrConfig

# Gradio's uploads and caches in a folder of this run's own, never the machine's shared one (another Gradio
# app on the machine writes there too); subprocesses inherit it.
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="mdsr-tests-gradio-")
os.environ["GRADIO_EXAMPLES_CACHE"] = os.path.join(os.environ["GRADIO_TEMP_DIR"], "cached_examples")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test reaches the network, nor waits on it
torch.set_num_threads(min(2, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BENCHMARK = SHARED_DATA / "benchmark"

needs_data = pytest.mark.skipif(not BENCHMARK.is_dir(), reason="../shared/data is not present")


def pytest_unconfigure(config) -> None:
    """The run's Gradio folder goes with the run (pytest's own tmp_path folders are kept and pruned by pytest)."""
    shutil.rmtree(os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)


TINY = MdsrConfig(n_resblocks=2, n_feats=16, reduction=4)


@pytest.fixture(autouse=True)
def vnni_cpu(monkeypatch):
    """Every test decides precisions for the same CPU kind, one with VNNI and no native bf16, whatever
    the host is (the kinds seen differ between machines); tests of other kinds set their own."""
    monkeypatch.setattr("mdsr.inference.host_cpu", lambda: CpuKind(int8=True, bf16=False))


def tiny(scales=(2, 3, 4)) -> MDSR:
    """A 2-block, 16-channel MDSR-BAM with fixed random weights: the shape of the real one, 1/300 of the work."""
    torch.manual_seed(1)
    return MDSR(MdsrConfig.from_dict({**TINY.to_dict(), "scales": scales})).eval()


@pytest.fixture
def tiny_model() -> MDSR:
    return tiny()


@pytest.fixture
def tiny_weights(tmp_path) -> str:
    """``tiny()`` saved as this project's safetensors file."""
    from mdsr.weights import save_weights

    return str(save_weights(tiny(), tmp_path / "tiny.safetensors"))


def super_image_folder(folder: Path, model: MDSR, scale: int) -> Path:
    """The layout of eugenesiow/mdsr-bam: config.json and pytorch_model_{s}x.pt with mean-shift extras."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "MDSR", "scale": scale, "bam": True}))
    state = dict(model.state_dict())
    state.update(
        {
            "sub_mean.weight": torch.eye(3).view(3, 3, 1, 1),
            "sub_mean.bias": torch.zeros(3),
            "add_mean.weight": torch.eye(3).view(3, 3, 1, 1),
            "add_mean.bias": torch.zeros(3),
        }
    )
    torch.save(state, folder / f"pytorch_model_{scale}x.pt")
    return folder


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """NASA's astronaut photograph (public domain), 512x512 RGB, from scikit-image."""
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    """Coffee cup by Rachel Michetti (CC0), 600x400 RGB, from scikit-image."""
    return Image.fromarray(skdata.coffee())


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    """Chelsea the cat by Stefan van der Walt (CC0), 451x300 RGB, from scikit-image."""
    return Image.fromarray(skdata.chelsea())


def crop(image: Image.Image, size: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> Image.Image:
    x, y = offset
    return image.crop((x, y, x + size[0], y + size[1]))


def benchmark_folder(folder: Path, image: Image.Image, name: str) -> Path:
    """A folder in the benchmarks' layout (``folder/HR``) holding one image, as ``name``."""
    (folder / "HR").mkdir(parents=True)
    image.save(folder / "HR" / name)
    return folder


def as_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL photo as the network takes it: float (1, 3, H, W) in [0, 1]."""
    return array_to_tensor(read_rgb8(image))


def super_resolve_8bit(model: MDSR, lr: np.ndarray, scale: int, **options) -> np.ndarray:
    """uint8 (H, W, 3) through ``super_resolve``, the output rounded to uint8 as the benchmarks score it."""
    return to_uint(tensor_to_array(super_resolve(model, array_to_tensor(lr), scale, **options)))


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def limited(monkeypatch, **changes) -> None:
    """The demo's limits with ``changes`` (mdsr.serving.Limits fields) for one test."""
    import dataclasses

    import app

    monkeypatch.setattr(app, "LIMITS", dataclasses.replace(app.LIMITS, **changes))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app() -> Iterator[str]:
    """The demo served in-process on a free local port; yields its URL."""
    import app

    _, url, _ = app.demo.launch(
        prevent_thread_lock=True,
        server_name="127.0.0.1",
        server_port=free_port(),
        quiet=True,
        max_file_size=app.LIMITS.file_bytes,
    )
    try:
        yield url
    finally:
        app.demo.close()


# Raw HTTP calls to the demo's /upscale endpoint, as any client on the internet could make them.


def call(url: str, data: list, *, fill: bool = True) -> tuple[str, str]:
    """POST /gradio_api/call/upscale, then read the event stream: ("complete" or "error", its data). A
    request refused on arrival, before it joins the queue, is an "error" too. ``fill``: as ``submit``."""
    try:
        with urllib.request.urlopen(submit(url, data, fill=fill), timeout=600) as response:
            event_id = json.loads(response.read())["event_id"]
    except urllib.error.HTTPError as err:
        return "error", err.read().decode()
    with urllib.request.urlopen(f"{url}gradio_api/call/upscale/{event_id}", timeout=1200) as response:
        stream = response.read().decode()
    event = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: ")][-1]
    payload = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("data: ")][-1]
    return event, payload


def submit(url: str, data: list, *, fill: bool = True) -> urllib.request.Request:
    """A raw call that sends every argument: (image, scale, ground truth, precision, weights, format, size),
    those not in ``data`` filled in; without ``fill``, only ``data``."""
    defaults = [None, 2, None, "auto", "auto", "png", None] if fill else []
    body = json.dumps({"data": [*data, *defaults[len(data) :]]}).encode()
    return urllib.request.Request(f"{url}gradio_api/call/upscale", body, headers={"Content-Type": "application/json"})


def data_url(image: Image.Image, padding: int = 0) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    raw = buffer.getvalue() + b"\0" * padding  # trailing bytes: still a decodable PNG, only larger
    return {"url": "data:image/png;base64," + base64.b64encode(raw).decode(), "meta": {"_type": "gradio.FileData"}}
