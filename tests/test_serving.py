"""The serving layer: one admission (every limit, from headers) and one run for every kind of request."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
from conftest import tiny
from PIL import Image
from sample_files import photo

from demo.workspace import Workspace
from mdsr import serving
from mdsr.serving import DEMO_LIMITS, Item, RefusedError, Request, admit, run
from mdsr.weights import LoadedWeights


def declared(tmp_path, size: tuple[int, int], name: str = "big.png") -> str:
    """A small file whose header declares ``size``: admission reads only headers."""
    path = tmp_path / name
    Image.new("1", size).save(path, optimize=True)
    return str(path)


def one(path, **options) -> Request:
    return Request(items=(Item("image", path),), **{"scale": 2, **options})


def test_a_request_within_every_limit_is_admitted_with_the_whole_image_trunk(tmp_path):
    admitted = admit(one(declared(tmp_path, (400, 300))), DEMO_LIMITS)
    assert admitted.plans[0].trunk == "whole" and admitted.work == 800 * 600


@pytest.mark.parametrize(("size", "trunk"), [((600, 600), "whole"), ((1100, 1100), "lean"), ((1300, 1300), "streamed")])
def test_a_request_gets_the_fastest_trunk_its_memory_limit_holds(tmp_path, size, trunk):
    admitted = admit(one(declared(tmp_path, size)), DEMO_LIMITS)
    assert admitted.plans[0].trunk == trunk and admitted.memory_mb <= DEMO_LIMITS.memory_mb


def test_a_request_too_large_even_streamed_is_refused_with_its_figure_and_the_limit(tmp_path):
    limits = dataclasses.replace(DEMO_LIMITS, memory_mb=800)
    with pytest.raises(RefusedError, match=r"a 1400x1400 image at 2x needs about [\d,]+ MB; the limit per request is 800 MB"):
        admit(one(declared(tmp_path, (1400, 1400))), limits)


def test_the_input_and_output_pixel_limits_name_the_figures(tmp_path):
    with pytest.raises(RefusedError, match=r"the image is 2000x1500 = 3,000,000 pixels; the limit is 2,100,000"):
        admit(one(declared(tmp_path, (2000, 1500))), DEMO_LIMITS)
    with pytest.raises(RefusedError, match=r"upscaled to 4800x3600 would be 17,280,000 pixels; the output limit is 16,777,216"):
        admit(one(declared(tmp_path, (1200, 900)), scale=4), DEMO_LIMITS)


def test_an_ab_request_counts_both_models_in_work_and_memory(tmp_path):
    path = declared(tmp_path, (600, 500))
    single, ab = admit(one(path), DEMO_LIMITS), admit(one(path, versus="bundled"), DEMO_LIMITS)
    assert ab.work == 2 * single.work and ab.memory_mb > single.memory_mb


def test_a_ground_truth_of_the_wrong_size_is_refused_from_its_header(tmp_path):
    request = Request(items=(Item("image", declared(tmp_path, (40, 30)), declared(tmp_path, (100, 100), "t.png")),),
                      scale=2, truth="upload")  # fmt: skip
    with pytest.raises(RefusedError, match=r"the ground truth is 100x100; for a 40x30 input at 2x it must be 80x60"):
        admit(request, DEMO_LIMITS)


def test_in_a_batch_a_refused_image_is_its_own_row_and_the_rest_are_admitted(tmp_path):
    items = (Item("small", declared(tmp_path, (40, 30))), Item("huge", declared(tmp_path, (3000, 3000), "h.png")))
    admitted = admit(Request(items=items, scale=2, each=True), DEMO_LIMITS)
    assert admitted.plans[0].refusal == "" and "the limit is 2,100,000 pixels" in admitted.plans[1].refusal
    assert admitted.work == 80 * 60


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("scale", 9, "scale must be from 1.1 to 8"), ("precision", "fp16", "precision must be"), ("truth", "mine", "ground truth must be")],
)
def test_bad_arguments_are_refused_naming_the_choices(tmp_path, field, value, message):
    with pytest.raises(RefusedError, match=message):
        admit(dataclasses.replace(one(declared(tmp_path, (40, 30))), **{field: value}), DEMO_LIMITS)


def test_a_run_decodes_each_image_once_and_writes_its_output(tmp_path, monkeypatch):
    photo((40, 30)).save(tmp_path / "cup.png")
    decoded = []
    read = serving.read_image
    monkeypatch.setattr(serving, "read_image", lambda source, **k: decoded.append(source) or read(source, **k))
    weights = LoadedWeights(tiny(), "tiny")
    admitted = admit(one(str(tmp_path / "cup.png"), versus="other", precision="fp32"), DEMO_LIMITS)
    outputs = serving.Outputs(tmp_path / "out", admitted.request.items, admitted.tag)
    outcome = run(admitted, load=lambda choice, scale: weights, outputs=outputs)
    result = outcome.results[0]
    assert decoded == [str(tmp_path / "cup.png")]
    assert result.path == tmp_path / "out" / "image_x2.png" and Image.open(result.path).size == (80, 60)
    assert result.versus is not None and result.comparison.bicubic is None  # A/B shows B, not bicubic


def test_a_workspace_deletes_what_an_earlier_process_left_once_it_is_old(tmp_path):
    earlier = Workspace(tmp_path, keep_s=900)
    old_result = earlier.new_folder() / "result.png"
    old_result.write_bytes(b"png")
    stale = time.time() - 1000
    for path in (old_result, old_result.parent, earlier.folder):
        os.utime(path, (stale, stale))
    later = Workspace(tmp_path, keep_s=900)  # the next process starts
    assert not old_result.exists() and not earlier.folder.exists() and later.folder.exists()


def test_a_workspace_keeps_what_is_younger_than_its_age_limit(tmp_path):
    workspace = Workspace(tmp_path, keep_s=900)
    result = workspace.new_folder() / "result.png"
    result.write_bytes(b"png")
    workspace.sweep()
    assert result.exists()
