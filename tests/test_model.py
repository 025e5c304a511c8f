"""The network: super-image's layout and outputs, one model for several scales."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from fixtures.formula_weights import formula_state  # tests/ is on the path (conftest), fixtures/ a namespace package
from safetensors import safe_open

from mdsr.model import MDSR, MdsrConfig, parameter_count
from mdsr.weights import model_from_state

FIXTURES = Path(__file__).parent / "fixtures"


def read_fixture() -> tuple[dict, dict]:
    with safe_open(str(FIXTURES / "super_image_mdsr_bam.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        keys = json.loads(f.metadata()["keys"])
    return tensors, keys


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_state_dict_keys_and_shapes_equal_super_image_for_one_scale(scale):
    _, keys = read_fixture()
    expected = {k: tuple(v) for k, v in keys[str(scale)].items() if not k.startswith(("sub_mean", "add_mean"))}
    ours = {k: tuple(v.shape) for k, v in MDSR(MdsrConfig(scales=(scale,))).state_dict().items()}
    assert ours == expected


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("path", ["inference", "training"])
def test_outputs_equal_super_image_on_the_same_weights(scale, path):
    tensors, keys = read_fixture()
    shapes = {k: tuple(v) for k, v in keys[str(scale)].items()}
    model = model_from_state(MdsrConfig(scales=(scale,)), formula_state(shapes), "fixture")
    if path == "inference":  # the fused, in-place attention arithmetic of ResBlock.infer
        with torch.inference_mode():
            out = model.reconstruct(model.infer_features(tensors["input"], scale), scale)
    else:  # super-image's own order of operations, used when training
        model.requires_grad_(True)
        out = model(tensors["input"], scale).detach()
    reference = tensors[f"output_x{scale}"]
    assert out.shape == reference.shape
    # fp32, summed in an order that differs between CPU kinds (PyTorch's and oneDNN's AVX2 and AVX-512
    # kernels): up to 1.5e-5 on outputs of magnitude ~7 was seen, 2e-6 of the largest value. The bound is
    # 100 float32 epsilons of it (8e-5), far below what any change of the arithmetic moves.
    assert (out - reference).abs().max().item() <= 100 * torch.finfo(torch.float32).eps * reference.abs().max().item()


def test_contract_key_names_are_present_in_the_multiscale_model():
    keys = set(MDSR().state_dict())
    for key in (
        "head.0.0.weight",
        "pre_process.2.0.body.0.0.weight",
        "pre_process.4.1.attention.ca.fc1.weight",
        "body.31.attention.sa.conv1.weight",
        "body.32.0.weight",
        "upsample.3.0.0.weight",
        "upsample.4.2.0.weight",
        "tail.0.0.weight",
    ):
        assert key in keys


def test_multiscale_model_shares_head_body_and_tail():
    model = MDSR(MdsrConfig(scales=(2, 3, 4)))
    single = MDSR(MdsrConfig(scales=(2,)))
    shared = {k for k in single.state_dict() if not k.startswith(("pre_process", "upsample"))}
    assert shared <= set(model.state_dict())
    assert {k.split(".")[1] for k in model.state_dict() if k.startswith("upsample")} == {"2", "3", "4"}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_multiplies_height_and_width_by_the_scale(tiny_model, scale):
    out = tiny_model(torch.rand(1, 3, 10, 7), scale)
    assert out.shape == (1, 3, 10 * scale, 7 * scale)


def test_a_scale_the_model_does_not_hold_is_a_clear_error():
    model = MDSR(MdsrConfig(n_resblocks=1, n_feats=16, reduction=4, scales=(2,)))
    with pytest.raises(ValueError, match="upscales by 2; got scale 4"):
        model(torch.rand(1, 3, 8, 8), 4)


def test_config_is_frozen_and_rejects_unsupported_scales():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MdsrConfig().n_feats = 32  # type: ignore[misc]
    with pytest.raises(ValueError, match="subset"):
        MdsrConfig(scales=(8,))


def test_config_round_trips_through_a_dict():
    config = MdsrConfig(n_resblocks=3, n_feats=32, scales=(4, 2))
    assert MdsrConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_constructor_arguments_are_keyword_only():
    from mdsr.model import ResBlock

    with pytest.raises(TypeError):
        ResBlock(64, 0.1, True, 16)  # type: ignore[misc]


@pytest.mark.parametrize(
    "config",
    [
        MdsrConfig(),
        MdsrConfig(n_resblocks=2, n_feats=16, reduction=4),
        MdsrConfig(n_resblocks=1, n_feats=8, reduction=8, scales=(4, 2), bam=False),
        MdsrConfig(n_resblocks=3, n_feats=24, reduction=3, scales=(3,)),
    ],
)
def test_parameter_count_is_the_number_of_the_models_weights(config):
    assert parameter_count(config) == sum(p.numel() for p in MDSR(config).parameters())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_feats", "64"),
        ("n_feats", 64.5),
        ("n_feats", True),
        ("n_resblocks", 2.0),
        ("reduction", "16"),
        ("res_scale", "0.1"),
        ("res_scale", True),
        ("bam", 1),
        ("scales", "234"),
        ("scales", 2),
        ("scales", [2.0]),
        ("scales", [True]),
    ],
)
def test_config_refuses_a_field_of_the_wrong_type(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        MdsrConfig.from_dict({field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_resblocks", 0),
        ("n_resblocks", 81),
        ("n_feats", 0),
        ("n_feats", -64),
        ("n_feats", 257),
        ("reduction", 0),
        ("reduction", -16),
        ("reduction", 5),
        ("res_scale", 0),
        ("res_scale", 1.5),
        ("res_scale", float("nan")),
        ("res_scale", float("inf")),
        ("scales", []),
        ("scales", [2, 8]),
    ],
)
def test_config_refuses_sizes_outside_the_mdsr_family(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        MdsrConfig.from_dict({field: value})


def test_the_largest_sizes_of_the_family_are_accepted():
    config = MdsrConfig(n_resblocks=80, n_feats=256, reduction=256, res_scale=1, scales=[2])
    assert (config.res_scale, config.scales) == (1.0, (2,))


@pytest.mark.parametrize("data", [[1, 2], "n_feats", None, 64])
def test_a_config_that_is_not_an_object_of_fields_is_refused(data):
    with pytest.raises(ValueError, match="an MDSR config must be an object of named fields"):
        MdsrConfig.from_dict(data)


def test_unknown_config_keys_are_ignored():
    assert MdsrConfig.from_dict({"n_feats": 32, "scale": 2, "model_type": "MDSR"}) == MdsrConfig(n_feats=32)
