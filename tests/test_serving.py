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
from mdsr.imaging import ImageError, read_image
from mdsr.inference import PreparedModels
from mdsr.serving import DEMO_LIMITS, Item, RefusedError, Request, admit, run
from mdsr.sizing import Target
from mdsr.weights import LoadedWeights


def declared(tmp_path, size: tuple[int, int], name: str = "big.png") -> str:
    """A small file whose header declares ``size``: admission reads only headers."""
    path = tmp_path / name
    Image.new("1", size).save(path, optimize=True)
    return str(path)


def one(path, *, scale: float = 2, **options) -> Request:
    return Request((Item("image", path),), Target(factor=scale), **options)


RESIDENT_MB = 550  # the demo's process at rest, fixed here: admission measures it in a real server


def admitted(request: Request, limits=DEMO_LIMITS) -> serving.Admitted:
    return admit(request, limits, resident=RESIDENT_MB)


def test_a_request_within_every_limit_is_admitted_with_the_whole_image_trunk(tmp_path):
    plan = admitted(one(declared(tmp_path, (400, 300)))).plans[0]
    assert plan.run.stages[0].trunk == "whole" and plan.work == 800 * 600 and plan.run.size == (800, 600)


@pytest.mark.parametrize(("size", "trunk"), [((600, 600), "whole"), ((1000, 1000), "lean"), ((1300, 1300), "streamed")])
def test_a_request_gets_the_fastest_trunk_its_memory_limit_holds(tmp_path, size, trunk):
    request = admitted(one(declared(tmp_path, size)))
    assert request.plans[0].run.stages[0].trunk == trunk and request.memory_mb <= DEMO_LIMITS.memory_mb


def test_the_memory_estimate_stands_on_the_process_as_it_is(tmp_path):
    request = one(declared(tmp_path, (600, 600)))
    assert admit(request, DEMO_LIMITS, resident=900).memory_mb == admit(request, DEMO_LIMITS, resident=500).memory_mb + 400


def test_a_request_too_large_even_streamed_is_refused_with_its_figure_and_the_limit(tmp_path):
    limits = dataclasses.replace(DEMO_LIMITS, memory_mb=800)
    refusal = r"a 1400x1400 image at 2x needs about [\d,]+ MB; the limit per request is 800 MB \(use a smaller image or scale\)$"
    with pytest.raises(RefusedError, match=refusal):
        admitted(one(declared(tmp_path, (1400, 1400))), limits)


def test_the_input_and_output_pixel_limits_name_the_figures(tmp_path):
    with pytest.raises(RefusedError, match=r"the image is 2000x1500 = 3,000,000 pixels; the limit is 2,100,000"):
        admitted(one(declared(tmp_path, (2000, 1500))))
    with pytest.raises(RefusedError, match=r"upscaled to 4800x3600 would be 17,280,000 pixels; the output limit is 16,777,216"):
        admitted(one(declared(tmp_path, (1200, 900)), scale=4))


def test_an_ab_request_counts_both_models_in_work_and_memory(tmp_path):
    path = declared(tmp_path, (600, 500))
    single, ab = admitted(one(path)), admitted(one(path, versus="bundled"))
    assert ab.work == 2 * single.work and ab.memory_mb > single.memory_mb


def test_a_ground_truth_of_the_wrong_size_is_refused_from_its_header(tmp_path):
    items = (Item("image", declared(tmp_path, (40, 30)), declared(tmp_path, (100, 100), "t.png")),)
    with pytest.raises(RefusedError, match=r"the ground truth is 100x100; for a 40x30 input at 2x it must be 80x60"):
        admitted(Request(items, Target(factor=2), truth="upload"))


def test_the_ground_truth_refusal_at_2x_allows_one_pixel_in_the_singular(tmp_path):
    items = (Item("image", declared(tmp_path, (40, 30)), declared(tmp_path, (100, 100), "t.png")),)
    with pytest.raises(RefusedError, match=r"it must be 80x60 \(or up to 1 pixel larger on each side\)$"):
        admitted(Request(items, Target(factor=2), truth="upload"))


def test_a_ground_truth_up_to_a_scale_larger_is_planned_to_be_cropped_to_the_output(tmp_path):
    items = (Item("image", declared(tmp_path, (40, 30)), declared(tmp_path, (81, 61), "t.png")),)
    truth = admitted(Request(items, Target(factor=2), truth="upload")).plans[0].truth
    assert (truth.kind, truth.declared, truth.size) == ("upload", (81, 61), (80, 60))


def test_an_image_as_its_own_truth_is_planned_once_lr_and_truth_sizes(tmp_path):
    plan = admitted(Request((Item("image", declared(tmp_path, (41, 31))),), Target(factor=2), truth="self")).plans[0]
    assert plan.truth.size == (40, 30) and plan.run.input_size == (20, 15) and plan.run.size == (40, 30)


def test_in_a_batch_a_refused_image_is_its_own_row_and_the_rest_are_admitted(tmp_path):
    items = (Item("small", declared(tmp_path, (40, 30))), Item("huge", declared(tmp_path, (3000, 3000), "h.png")))
    request = admitted(Request(items, Target(factor=2), each=True))
    assert request.plans[0].refusal == "" and "the limit is 2,100,000 pixels" in request.plans[1].refusal
    assert request.work == 80 * 60


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (serving.parse_target, 9, "scale must be from 1.1 to 8"),
        (serving.parse_precision, "fp16", "precision must be"),
        (serving.parse_truth, "mine", "ground truth must be"),
    ],
)
def test_bad_arguments_are_refused_at_the_edge_naming_the_choices(parse, value, message):
    with pytest.raises(ValueError, match=message):
        parse(value)


def test_a_scale_and_a_size_together_are_refused():
    with pytest.raises(ValueError, match="give a scale or a size, not both"):
        serving.parse_target(2, "1920x1080")


def test_a_run_decodes_each_image_once_and_writes_its_output(tmp_path, monkeypatch):
    photo((40, 30)).save(tmp_path / "cup.png")
    decoded = []
    read = serving.read_image
    monkeypatch.setattr(serving, "read_image", lambda source, **k: decoded.append(source) or read(source, **k))
    weights = {2: LoadedWeights(tiny(), "tiny")}
    request = admitted(one(str(tmp_path / "cup.png"), versus="other", precision="fp32"))
    outputs = serving.Outputs(tmp_path / "out", request.request.items, request.tag)
    outcome = run(request, weights=weights, versus=weights, prepared=PreparedModels(), outputs=outputs)
    result = outcome.results[0]
    assert decoded == [str(tmp_path / "cup.png")]
    assert result.path == tmp_path / "out" / "image_x2.png" and Image.open(result.path).size == (80, 60)
    assert result.versus is not None and result.comparison.bicubic is None  # A/B shows B, not bicubic


def test_an_image_whose_header_and_pixels_disagree_is_refused_when_decoded(tmp_path, monkeypatch):
    photo((40, 30)).save(tmp_path / "cup.png")
    request = admitted(one(str(tmp_path / "cup.png"), precision="fp32"))
    monkeypatch.setattr(serving, "read_image", lambda source, **k: read_image(photo((30, 40))))
    with pytest.raises(ImageError, match="does not give the 30x40 it decoded as"):
        run(request, weights={2: LoadedWeights(tiny(), "tiny")}, prepared=PreparedModels())


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


def test_a_workspace_keeps_the_files_the_example_cache_names_however_old(tmp_path):
    from demo.workspace import files_named_in

    uploads, cache = tmp_path / "uploads", tmp_path / "cached_examples" / "49"
    (uploads / "a1b2").mkdir(parents=True)
    cache.mkdir(parents=True)
    example, upload = uploads / "a1b2" / "image.png", uploads / "a1b2" / "visitor.png"
    example.write_bytes(b"png")
    upload.write_bytes(b"png")
    (cache / "log.csv").write_text(f"component 0\n\"{{'value': '{example}', '__type__': 'update'}}\"\n")
    stale = time.time() - 1000
    for path in (example, upload, example.parent):
        os.utime(path, (stale, stale))
    Workspace(uploads, keep_s=900, keep=lambda: files_named_in(cache.parent, uploads))
    assert example.exists() and not upload.exists()
