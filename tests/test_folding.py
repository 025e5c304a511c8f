"""The folded HR stage: one 5x5 convolution standing for the upsampler and tail, the same function."""

from __future__ import annotations

import pytest
import torch
from conftest import as_tensor

import mdsr
from mdsr.folding import FoldedUpsampler, fold_upsamplers, is_folded
from mdsr.inference import PreparedModels, super_resolve


@pytest.fixture(scope="module")
def shipped():
    return mdsr.load_model()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_folded_stage_equals_the_layers_it_replaces_away_from_the_map_edge(shipped, scale):
    torch.manual_seed(0)
    features = torch.randn(1, shipped.config.n_feats, 24, 20)
    folded = FoldedUpsampler(upsampler=shipped.upsample[str(scale)], tail=shipped.tail, scale=scale, n_feats=64)
    with torch.inference_mode():
        want, got = shipped.reconstruct(features, scale), folded(features)
    ring = 3  # HR pixels next to the map's edge, where the unfolded layers read their zero padding
    assert got.shape == want.shape
    assert torch.allclose(got[..., ring:-ring, ring:-ring], want[..., ring:-ring, ring:-ring], atol=2e-5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_inference_with_the_folded_stage_equals_inference_without_it(shipped, astronaut, scale):
    lr = as_tensor(astronaut.resize((40, 36)))
    folded = fold_upsamplers(shipped)
    tiled = {"tile": 16}  # several tiles: their halos meet the folded stage's reach too
    assert torch.allclose(
        super_resolve(folded, lr, scale, **tiled), super_resolve(shipped, lr, scale, **tiled), atol=2e-5
    )


def test_the_bare_network_runs_the_unfolded_layers_at_its_edges(tiny_model, coffee):
    lr = as_tensor(coffee.resize((24, 20)))
    bare = super_resolve(tiny_model, lr, 4, edge_padding=0)
    assert torch.equal(super_resolve(fold_upsamplers(tiny_model), lr, 4, edge_padding=0), bare)


def test_folding_leaves_the_model_it_copies_as_it_was(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    folded = fold_upsamplers(tiny_model)
    assert is_folded(folded) and not is_folded(tiny_model)
    after = tiny_model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_fp32_runs_a_folded_copy_made_once_per_model(tiny_model):
    prepared = PreparedModels()
    first = prepared.get(tiny_model, "fp32")
    assert is_folded(first) and prepared.get(tiny_model, "fp32") is first
    assert prepared.get(first, "fp32") is first  # a prepared copy is already prepared


def test_changed_weights_get_a_new_folded_copy(tiny_model):
    prepared = PreparedModels()
    first = prepared.get(tiny_model, "fp32")
    with torch.no_grad():
        tiny_model.tail[0][0].bias.add_(0.1)  # an optimiser step, in place
    second = prepared.get(tiny_model, "fp32")
    assert second is not first
    assert not torch.equal(second.upsample["2"].bias, first.upsample["2"].bias)
