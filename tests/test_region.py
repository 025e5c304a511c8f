"""The region view: for a photo over the demo's limits, the UI upscales the largest part of it that fits
every limit the request is admitted with (input pixels, work with its passes, output pixels, memory),
whatever the factor, with self-ensemble and in A/B mode; never a refusal of the whole."""

from __future__ import annotations

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
        **{**app.DEFAULTS, "precision": PRECISION, "self_ensemble": self_ensemble, **versus},
        custom_size=factor, progress=lambda *a, **k: None,
    )  # fmt: skip
    assert "region:" in result.info and result.region is not None
    height, width = result.output.shape[:2]
    assert width * height * (8 if self_ensemble else 1) * (2 if ab else 1) <= app.LIMITS.work_pixels
