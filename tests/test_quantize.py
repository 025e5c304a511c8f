"""The int8 path ("auto" on CPUs with VNNI, AMX or AVX2): accurate convolutions at the weights' width this
machine's kernels sum exactly, the shipped weights' PSNR kept within 0.01 dB on real photos, and clear
errors where it cannot run."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import BENCHMARK, as_tensor, needs_data, super_resolve_8bit, tiny
from skimage import data as skdata
from torch.nn import functional

import mdsr
from mdsr import quantize
from mdsr.evaluate import load_benchmark, validate
from mdsr.imaging import bicubic_downscale
from mdsr.inference import PreparedModels, host_cpu, resolve_precision, super_resolve, upscale_picture
from mdsr.metrics import psnr
from mdsr.quantize import Int8Branch, Int8Conv2d, int8_available, int8_model, is_int8
from mdsr.train import TrainConfig, train

needs_int8 = pytest.mark.skipif(not int8_available(), reason="this PyTorch has no oneDNN int8 convolution")


@pytest.fixture(scope="module")
def shipped():
    return mdsr.load_model()


@pytest.fixture(scope="module")
def shipped_int8(shipped):
    return int8_model(shipped)


def photo_features(model, image) -> torch.Tensor:
    """Real activations: the shipped head's features of a photo, as the trunk's first conv sees them."""
    with torch.inference_mode():
        return model.head(as_tensor(image)).contiguous(memory_format=torch.channels_last)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@needs_int8
def test_an_int8_convolution_is_within_two_percent_of_fp32(shipped, chelsea):
    conv, x = shipped.body[0].body[0][0], photo_features(shipped, chelsea.crop((0, 0, 96, 80)))
    with torch.inference_mode():
        assert relative_error(Int8Conv2d(conv)(x), conv(x)) < 0.02


# This machine's CPU, read here on purpose (conftest gives every test a forced kind): the two tests on the
# real kernels below run only where the platform has them.
HOST = host_cpu()


@pytest.fixture
def fresh_weight_bits():
    """``int8_weight_bits`` found anew in the test and again after it (it is kept once found)."""
    quantize.int8_weight_bits.cache_clear()
    yield
    quantize.int8_weight_bits.cache_clear()


@pytest.mark.parametrize(("exact", "bits"), [({8, 7}, 8), ({7}, 7), (set(), None)])
def test_weights_are_8_bit_where_the_kernels_sum_exactly_and_7_bit_where_pairs_saturate(
    monkeypatch, fresh_weight_bits, exact, bits
):
    monkeypatch.setattr(quantize, "_sums_exactly", lambda b: b in exact)
    assert quantize.int8_weight_bits() == bits


@needs_int8
@pytest.mark.skipif(not HOST.avx2, reason="this machine's CPU has no AVX2")
def test_onednns_pre_vnni_kernels_get_7_bit_weights():
    """The real kernels, forced to AVX2 (as on a Zen 3 EPYC; native where the host has no VNNI): their
    16-bit pair sums saturate with 8-bit weights, so the probe must find 7."""
    code = "from mdsr import quantize; print(quantize.int8_weight_bits())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.stdout.split()[-1:] == ["7"], done.stderr[-2000:]


@needs_int8
def test_seven_bit_weights_take_63_steps_each_side(shipped):
    conv = Int8Conv2d(shipped.body[0].body[0][0], weight_bits=7)
    steps = (conv.dequantized_weight / conv.weight_scale[:, None, None, None]).round().abs().amax(dim=(1, 2, 3))
    assert (steps == 63).all()  # 2 x 255 x 63 = 32,130: a pair of products fits 16 bits


@needs_int8
def test_refining_makes_the_activations_as_good_as_fp32(shipped, chelsea):
    """What is left after the second pass is the weights' rounding: against the same convolution run in fp32
    with the int8 weights, the refined error is under a hundredth of the plain one's (the upsampler's
    input mixes channels of very different ranges: one 8-bit scale fits it badly)."""
    conv = shipped.upsample["2"][0][0]
    with torch.inference_mode():
        x = shipped.infer_features(as_tensor(chelsea.crop((0, 0, 96, 80))), 2).contiguous(
            memory_format=torch.channels_last
        )
        plain, refined = Int8Conv2d(conv), Int8Conv2d(conv, refine=True)
        int8_weights = functional.conv2d(x, plain.dequantized_weight, plain.bias, padding=1)
        assert relative_error(refined(x), int8_weights) < relative_error(plain(x), int8_weights) / 100


@needs_int8
def test_the_fused_relu_is_applied(shipped, chelsea):
    conv, x = shipped.body[0].body[0][0], photo_features(shipped, chelsea.crop((0, 0, 64, 64)))
    with torch.inference_mode():
        out = Int8Conv2d(conv, relu=True)(x)
        assert out.min() >= 0 and relative_error(out, torch.relu(conv(x))) < 0.02


@needs_int8
def test_an_int8_convolution_leaves_its_input_untouched(shipped, chelsea):
    conv, x = shipped.body[0].body[0][0], photo_features(shipped, chelsea.crop((0, 0, 64, 64)))
    before = x.clone()
    with torch.inference_mode():
        Int8Conv2d(conv, refine=True)(x)
    assert torch.equal(x, before)


def rocket_pair(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """SpaceX's DSCOVR launch photo (public domain), from scikit-image: not among the calibration photos."""
    hr = skdata.rocket()[: 420 - 420 % scale, : 636 - 636 % scale]
    return bicubic_downscale(hr, scale), hr


@needs_int8
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_int8_keeps_the_shipped_weights_psnr_within_a_hundredth_of_a_db(shipped, shipped_int8, scale):
    lr, hr = rocket_pair(scale)
    fp32 = psnr(super_resolve_8bit(shipped, lr, scale, precision="fp32"), hr, shave=scale)
    int8 = psnr(super_resolve_8bit(shipped_int8, lr, scale, precision="int8"), hr, shave=scale)
    assert abs(int8 - fp32) < 0.01


@needs_int8
def test_seven_bit_weights_keep_the_shipped_weights_psnr_within_a_hundredth_of_a_db(shipped):
    """What CPUs without VNNI run, checked on every CPU that runs int8 (7-bit weights sum exactly on all)."""
    lr, hr = rocket_pair(2)
    fp32 = psnr(super_resolve_8bit(shipped, lr, 2, precision="fp32"), hr, shave=2)
    seven = psnr(super_resolve_8bit(int8_model(shipped, weight_bits=7), lr, 2, precision="int8"), hr, shave=2)
    assert abs(seven - fp32) < 0.01


@needs_int8
@needs_data
def test_int8_keeps_set5_psnr_within_a_hundredth_of_a_db(shipped, shipped_int8):
    for scale in (2, 3, 4):
        pairs = load_benchmark(BENCHMARK / "Set5", scale)
        assert abs(validate(shipped_int8, pairs, scale, precision="int8") - validate(shipped, pairs, scale)) < 0.01


@needs_int8
def test_calibration_sets_a_relu_scale_for_every_block(shipped_int8):
    branches = [m for m in shipped_int8.modules() if isinstance(m, Int8Branch)]
    assert len(branches) == 32 + 2 * 3 and all(b.relu_scale and b.relu_scale > 0 for b in branches)


@needs_int8
def test_an_activation_beyond_the_calibrated_range_is_recomputed_not_clipped(shipped, chelsea):
    block = shipped.body[0]
    branch = Int8Branch(block.body[0][0], block.body[2][0])
    x = photo_features(shipped, chelsea.crop((0, 0, 64, 64)))
    with torch.inference_mode():
        dynamic = branch(x)
        branch.relu_scale = 1e-6  # far too small: the first convolution's output saturates
        assert torch.equal(branch(x), dynamic)


@needs_int8
def test_converting_to_int8_leaves_the_fp32_model_as_it_was(shipped):
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    converted = int8_model(shipped)
    assert is_int8(converted) and not is_int8(shipped)
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in before.items())


@needs_int8
def test_int8_layers_refuse_to_train(shipped_int8):
    with pytest.raises(RuntimeError, match="inference only"):
        shipped_int8(torch.rand(1, 3, 16, 16), 2)


@needs_int8
def test_a_model_is_converted_to_int8_once_and_the_copy_kept(tiny_model):
    prepared = PreparedModels()
    first = prepared.get(tiny_model, "int8")
    assert prepared.get(tiny_model, "int8") is first and is_int8(first) and not is_int8(tiny_model)
    assert prepared.get(tiny_model, "fp32") is prepared.get(tiny_model, "bf16")  # one folded fp32 copy


@needs_int8
def test_changed_weights_get_a_new_int8_copy(tiny_model):
    prepared = PreparedModels()
    first = prepared.get(tiny_model, "int8")
    with torch.no_grad():
        tiny_model.tail[0][0].bias.add_(0.1)  # an optimiser step, in place
    assert prepared.get(tiny_model, "int8") is not first


@needs_int8
def test_a_model_that_is_gone_takes_its_copies_with_it():
    prepared = PreparedModels()
    model = tiny()
    prepared.get(model, "int8")
    del model
    gc.collect()
    assert len(prepared._copies) == 0


@needs_int8
def test_an_fp32_model_is_not_run_as_int8_without_being_converted(tiny_model):
    with pytest.raises(ValueError, match="runs an int8 model"):
        super_resolve(tiny_model, torch.rand(1, 3, 16, 16), 2, precision="int8")


def test_int8_where_it_cannot_run_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(quantize, "int8_weight_bits", lambda: None)
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        resolve_precision("int8")


@needs_int8
def test_an_int8_model_refuses_an_explicit_fp32_run(shipped_int8):
    with pytest.raises(ValueError, match="converted to int8"):
        PreparedModels().get(shipped_int8, "fp32")
    with pytest.raises(ValueError, match="converted to int8"):
        super_resolve(shipped_int8, torch.rand(1, 3, 16, 16), 2, precision="fp32")


@needs_int8
def test_the_run_info_says_int8(tiny_model, coffee):
    from mdsr.imaging import picture_from_pil

    out, info = upscale_picture(tiny_model, picture_from_pil(coffee.crop((0, 0, 40, 30))), 2, precision="int8")
    assert info.precision == "int8" and out.rgb.shape == (60, 80, 3)


def test_training_in_int8_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="int8 is an inference mode"):
        train(TrainConfig(data=(str(tmp_path),), out=str(tmp_path / "run"), precision="int8"))
    assert not (tmp_path / "run").exists()


def test_checking_for_int8_leaves_the_random_state_alone():
    quantize.int8_weight_bits.cache_clear()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    int8_available()
    assert torch.equal(torch.rand(3), expected)


def test_mdsr_adds_no_process_wide_warning_filter():
    code = (
        "import warnings, torch, mdsr, mdsr.quantize as q;"
        "q.int8_model(mdsr.load_model()) if q.int8_available() else None;"
        "print(any('quantize' in (f[1].pattern if f[1] else '') for f in warnings.filters))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)
    assert done.stdout.strip() == "False", done.stderr[-500:]


def test_auto_on_a_vnni_cpu_without_the_int8_operators_runs_fp32_and_says_so(monkeypatch, caplog):
    from mdsr import inference

    monkeypatch.setattr(quantize, "int8_weight_bits", lambda: None)
    inference._say_int8_missing.cache_clear()
    with caplog.at_level("WARNING", logger="mdsr.inference"):
        assert inference.auto_precision() == "fp32"
    assert "precision 'auto' runs fp32, 1.6-3x slower" in caplog.text


@pytest.mark.skipif(torch.__version__.split("+")[0] != "2.13.0", reason="the pinned PyTorch is not the one installed")
@pytest.mark.skipif(not HOST.int8, reason="this machine's CPU has no 8-bit dot products")
def test_on_the_pinned_pytorch_and_a_vnni_cpu_the_int8_path_runs():
    """A changed internal operator would turn 'auto' into fp32, 3x slower, with every other test green:
    on the platform the project pins, that fails here."""
    quantize.int8_weight_bits.cache_clear()
    assert quantize.int8_available() and quantize.int8_weight_bits() == 8  # VNNI sums 8-bit products exactly
