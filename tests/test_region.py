"""The region view: for a photo over the demo's limits, the UI upscales the largest part of it that fits
every limit the request is admitted with (input pixels, work with its passes, output pixels, memory),
whatever the factor, with self-ensemble and in A/B mode; never a refusal of the whole."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from PIL import Image

from mdsr import serving
from mdsr.quantize import int8_available
from mdsr.sizing import Target

PHOTO = (4000, 3000)  # a 12-megapixel phone photo: over the demo's 2.1 megapixels, under what it cuts from
PRECISION = "int8" if int8_available() else "fp32"


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory, astronaut) -> str:
    """The astronaut (NASA, public domain) as a 4000x3000 JPEG."""
    path = tmp_path_factory.mktemp("region") / "astronaut_4000x3000.jpg"
    astronaut.resize(PHOTO, Image.Resampling.LANCZOS).save(path, quality=90)
    return str(path)


@pytest.fixture(scope="module")
def demo_at_rest():
    """The demo's process much as a visitor finds it (Gradio, the app and the bundled weights loaded; not
    their int8 copy, which takes 20 s to make): the resident memory its admission stands on."""
    import app

    app.STORE.get(None, 2)


@pytest.mark.parametrize(
    ("factor", "self_ensemble", "ab"), list(itertools.product([1.5, 6, 8], [False, True], [False, True]))
)
def test_the_part_of_a_4000x3000_photo_the_ui_admits_fits_every_demo_limit(
    demo_at_rest, phone_photo, factor, self_ensemble, ab
):
    request = serving.Request(
        (serving.Item("photo.jpg", phone_photo),), Target(factor=factor), versus="bundled" if ab else None,
        precision=PRECISION, self_ensemble=self_ensemble, bicubic=not ab, views=True, region=serving.Region(),
    )  # fmt: skip
    limits = serving.DEMO_LIMITS
    plan = serving.admit(request, limits).plans[0]  # the process's resident memory measured, as the demo does
    (w, h), (ow, oh) = plan.region, plan.run.size
    assert w * h <= limits.input_pixels and ow * oh <= limits.output_pixels
    assert plan.work <= limits.work_pixels and plan.memory_mb <= limits.memory_mb
    assert abs(w / h - 4 / 3) < 0.02  # the photo's aspect ratio
    assert plan.over.startswith("the image is 4000x3000 = 12,000,000 pixels")


@pytest.mark.parametrize(
    ("factor", "self_ensemble", "ab"),
    [("1.5", True, False), ("6", False, True), ("8", False, False)],
    ids=["x1.5-self-ensemble", "x6-ab", "x8"],
)
def test_the_ui_upscales_the_largest_part_of_a_4000x3000_photo(phone_photo, factor, self_ensemble, ab, monkeypatch):
    """Through the UI end to end, with the work limit at a sixteenth of the demo's so that each run takes
    seconds, not minutes (the demo's own limits are checked at admission above)."""
    from conftest import limited

    import app

    limited(monkeypatch, work_pixels=serving.DEMO_LIMITS.work_pixels // 16)
    versus = {"versus": app.BUNDLED} if ab else {}  # A/B: the bundled weights as B
    result = app.upscale_ui(
        image=phone_photo, scale=2, gt_mode=app.GT_NONE, gt_image=None,
        precision=PRECISION, self_ensemble=self_ensemble, **versus,
        custom_size=factor, progress=lambda *a, **k: None,
    )  # fmt: skip
    assert "region:" in result.info and result.region is not None
    height, width = result.output.shape[:2]
    assert width * height * (8 if self_ensemble else 1) * (2 if ab else 1) <= app.LIMITS.work_pixels


def region_request(path: str, target: Target) -> serving.Request:
    """What the UI asks: a region wherever the photo is over a limit, no ground truth."""
    return serving.Request(
        (serving.Item("photo.png", path),), target, precision="fp32", bicubic=True, views=True, region=serving.Region()
    )


def test_a_size_below_the_smallest_factor_is_refused_not_cut_to_a_region(tmp_path, astronaut):
    """A 150x100 photo asked at a height of 50 (0.5x) is refused for its factor; a part of it is no answer."""
    path = str(tmp_path / "small.png")
    astronaut.resize((150, 100)).save(path)
    with pytest.raises(serving.RefusedError, match=r"0\.5x; the output must be 1\.1 to 8 times the input") as refused:
        serving.admit(region_request(path, Target(height=50)), serving.DEMO_LIMITS, resident=0.0)
    assert not isinstance(refused.value, serving.OverLimitError)


def test_a_one_pixel_image_is_refused_for_its_size_not_planned_as_a_larger_region(tmp_path):
    path = str(tmp_path / "dot.png")
    Image.new("RGB", (1, 1), (200, 30, 30)).save(path)
    with pytest.raises(serving.RefusedError, match="the image is 1x1; it must be at least 2 pixels on each side"):
        serving.admit(region_request(path, Target(factor=2)), serving.DEMO_LIMITS, resident=0.0)


def test_a_region_is_never_larger_than_its_photo(tmp_path):
    """A photo over the work limit only at its size: its region search starts from parts of at least 16 pixels
    a side, cut to the photo's own sides."""
    path = str(tmp_path / "strip.png")
    Image.new("RGB", (3000, 12), (10, 120, 60)).save(path)
    limits = dataclasses.replace(serving.DEMO_LIMITS, work_pixels=3000 * 12 * 4 // 2)
    plan = serving.admit(region_request(path, Target(factor=2)), limits, resident=0.0).plans[0]
    assert plan.region is not None and plan.region[0] <= 3000 and plan.region[1] <= 12
