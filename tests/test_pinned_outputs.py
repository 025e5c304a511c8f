"""Outputs pinned bit for bit: the bundled examples and Set5 through every public path (the demo's
comparison with a ground truth, a self-made ground truth, the PIL API with grey, alpha and 16 bits, the
training patches, the benchmark evaluation), each image hashed and each score compared exactly.

The pins in ``fixtures/pinned_outputs.json`` were written by ``python tests/test_pinned_outputs.py`` at
commit be41896, before the image layer was refactored (issue 13), so a refactor that moves one pixel or
one score's last bit fails here. A deliberate change of output rewrites them with the same command and
says why in its commit; so far twice, in the refactor itself: the super-image protocol's scores (network
run without edge padding) moved by < 3e-7 dB, as its input now reaches the network in the channels-last
layout the other paths already had (a stride quirk of the old conversion had run that path in NCHW); then
when inference folded the HR stage into one convolution (``mdsr.folding``): the standard protocol's
scores moved by < 4e-5 dB, the super-image protocol's (no edge padding: the unfolded layers) not at all.
Precision is fp32 throughout: oneDNN's fp32 convolutions gave identical floats with its AVX2 and AVX-512
kernels (``ONEDNN_MAX_CPU_ISA``) on 2 threads, as CI runs (1 thread moves the last bits of the x2
comparison), so the pins hold on every CPU kind this project has met; bf16 and int8 depend on the CPU's
instructions and are not pinned.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import BENCHMARK, ROOT, needs_data, super_resolve_8bit
from PIL import Image

import mdsr
from mdsr import serving
from mdsr.compare import Comparison
from mdsr.data import PatchDataset
from mdsr.evaluate import evaluate, load_benchmark
from mdsr.imaging import picture_to_array
from mdsr.inference import PreparedModels, upscale
from mdsr.weights import LoadedWeights

PINS = ROOT / "tests" / "fixtures" / "pinned_outputs.json"
EXAMPLES = {2: "chelsea", 3: "coffee", 4: "astronaut"}


def digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def compared(model: mdsr.MDSR, item: serving.Item, scale: int, truth: str) -> Comparison:
    """The demo's comparison of one item at ``scale``: admitted and run as the demo runs it, in fp32."""
    request = serving.Request((item,), serving.parse_target(scale), precision="fp32", truth=truth, bicubic=True)
    admitted = serving.admit(request, serving.CLI_LIMITS, resident=0)
    weights = {s: LoadedWeights(model, "bundled") for s in admitted.scales}
    return serving.run(admitted, weights=weights, prepared=PreparedModels()).results[0].comparison


def example_outputs(model: mdsr.MDSR, scale: int) -> dict:
    """The demo's comparison of one example against its original, and a self-made truth of a crop."""
    name = EXAMPLES[scale]
    lr, hr = ROOT / "examples" / f"{name}_lr_x{scale}.png", ROOT / "examples" / f"{name}.png"
    given = compared(model, serving.Item("lr.png", str(lr), str(hr)), scale, "upload")
    crop = io.BytesIO()
    with Image.open(hr) as image:
        image.crop((40, 30, 40 + 30 * scale, 30 + 24 * scale)).save(crop, format="PNG")
    itself = compared(model, serving.Item("crop.png", crop), scale, "self")
    return {
        "output": digest(picture_to_array(given.output)),
        "bicubic": digest(picture_to_array(given.bicubic)),
        "metrics": asdict(given.metrics),
        "self_truth_lr": digest(picture_to_array(itself.lr)),
        "self_truth_output": digest(picture_to_array(itself.output)),
        "self_truth_metrics": asdict(itself.metrics),
    }


def pil_outputs(model: mdsr.MDSR) -> dict:
    """``mdsr.upscale`` on PIL images of other kinds: grey with alpha, 16-bit grey, palette, RGBA."""
    with Image.open(ROOT / "examples" / "chelsea_lr_x2.png") as image:
        rgb = image.crop((100, 40, 148, 88)).convert("RGB")
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1)))
    grey_alpha = rgb.convert("L")
    grey_alpha.putalpha(ramp)
    rgba = rgb.copy()
    rgba.putalpha(ramp.transpose(Image.Transpose.ROTATE_90))
    deep = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257 + 100).clip(0, 65535))
    kinds = {"LA": grey_alpha, "RGBA": rgba, "I;16": deep, "P": rgb.quantize(64)}
    pinned = {}
    for kind, image in kinds.items():
        result = upscale(model, image, 2, precision="fp32")
        pinned[kind] = {"mode": result.mode, "pixels": digest(np.asarray(result))}
    return pinned


def training_patches() -> dict:
    """LR made by the MATLAB bicubic from the examples, and one batch of augmented patches."""
    data = PatchDataset.from_folders([ROOT / "examples"], scales=(2, 3, 4), patch_size=24)
    generator = torch.Generator().manual_seed(7)
    pinned = {f"lr_x{s}": [digest(lr) for lr in data.lr[s]] for s in (2, 3, 4)}
    for s in (2, 4):
        lr, hr = data.sample(batch_size=4, scale=s, generator=generator)
        pinned[f"batch_x{s}"] = [digest(lr.numpy()), digest(hr.numpy())]
    return pinned


def set5_outputs(model: mdsr.MDSR) -> dict:
    """Set5 through the evaluation (per-image scores, both protocols) and the x4 outputs themselves."""
    standard = evaluate(model, [BENCHMARK / "Set5"], [2, 3, 4], precision="fp32", show_progress=False)
    theirs = evaluate(model, [BENCHMARK / "Set5"], [4], protocol="super-image", precision="fp32", show_progress=False)
    outputs = {
        pair.name: digest(super_resolve_8bit(model, pair.lr, 4, precision="fp32"))
        for pair in load_benchmark(BENCHMARK / "Set5", 4)
    }
    return {
        "standard": [r.per_image for r in standard],
        "super-image x4": theirs[0].per_image,
        "outputs x4": outputs,
    }


@pytest.fixture(scope="module")
def model() -> mdsr.MDSR:
    return mdsr.load_model()


@pytest.fixture(scope="module")
def pins() -> dict:
    return json.loads(PINS.read_text())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_demo_comparison_of_each_example_is_unchanged(model, pins, scale):
    assert json.loads(json.dumps(example_outputs(model, scale))) == pins["examples"][str(scale)]


def test_pil_images_of_every_kind_upscale_unchanged(model, pins):
    assert pil_outputs(model) == pins["pil"]


def test_training_patches_are_unchanged(pins):
    assert training_patches() == pins["training"]


@needs_data
def test_set5_outputs_and_scores_are_unchanged(model, pins):
    assert json.loads(json.dumps(set5_outputs(model))) == pins["set5"]


if __name__ == "__main__":
    torch.set_num_threads(2)
    net = mdsr.load_model()
    written = {
        "examples": {str(s): example_outputs(net, s) for s in EXAMPLES},
        "pil": pil_outputs(net),
        "training": training_patches(),
        "set5": set5_outputs(net),
    }
    PINS.write_text(json.dumps(written, indent=1) + "\n")
    print(f"wrote {PINS}", file=sys.stderr)
