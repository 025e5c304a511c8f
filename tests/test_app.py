"""The Gradio app through its API (gradio_client), in-process on a free port: sizes, metrics, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT, limited, running_app
from PIL import Image
from sample_files import colour_profile, photo, write

from mdsr.inference import resolve_precision
from mdsr.quantize import int8_available

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def app_module():
    import app

    return app


@pytest.fixture(scope="module")
def client():
    with running_app() as url:
        yield Client(url, verbose=False)


def call(client, image, scale, truth=None):
    return client.predict(
        handle_file(str(image)), scale, handle_file(str(truth)) if truth else None, api_name="/upscale"
    )


def test_the_api_takes_the_precision_as_an_optional_fourth_argument(client, tmp_path):
    photo((40, 30)).save(tmp_path / "small.png")
    _, default = call(client, tmp_path / "small.png", 2)
    path, report = client.predict(handle_file(str(tmp_path / "small.png")), 2, None, "fp32", api_name="/upscale")
    assert default["precision"] == resolve_precision("auto") and report["precision"] == "fp32"
    assert Image.open(path).size == (80, 60)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_each_scale_gives_the_right_output_size(client, tmp_path, scale):
    photo((40, 30)).save(tmp_path / "small.png")
    path, report = call(client, tmp_path / "small.png", scale)
    assert Image.open(path).size == (40 * scale, 30 * scale)
    assert (report["width"], report["height"], report["metrics"]) == (40 * scale, 30 * scale, None)


def test_ground_truth_mode_reports_mdsr_above_bicubic(client, tmp_path):
    truth = Image.open(EXAMPLES / "coffee.png").crop((150, 90, 390, 282))  # 240x192, divisible by 3
    from mdsr.imaging import bicubic_downscale

    truth.save(tmp_path / "truth.png")
    Image.fromarray(bicubic_downscale(np.asarray(truth), 3)).save(tmp_path / "lr.png")
    _, report = call(client, tmp_path / "lr.png", 3, tmp_path / "truth.png")
    m = report["metrics"]
    assert m["mdsr"]["psnr"] > m["bicubic"]["psnr"] and m["gain_db"] > 0


def test_a_ground_truth_of_the_wrong_size_states_the_expected_size(client, tmp_path):
    photo((40, 30)).save(tmp_path / "lr.png")
    photo((100, 100)).save(tmp_path / "truth.png")
    with pytest.raises(AppError, match=r"ground truth is 100x100; for a 40x30 input at 2x it must be 80x60"):
        call(client, tmp_path / "lr.png", 2, tmp_path / "truth.png")


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ("not_an_image", "not an image that can be read"),
        ("empty_file", "not an image that can be read"),
        ("truncated_png", "could not be decoded"),
        ("one_pixel", "at least 2 pixels"),
        ("decompression_bomb", "too many pixels .* decompression bomb"),
    ],
)
def test_bad_files_give_a_clear_error_and_the_server_keeps_serving(client, tmp_path, sample, message):
    with pytest.raises(AppError, match=message):
        call(client, write(tmp_path, sample), 2)
    photo((20, 16)).save(tmp_path / "ok.png")
    path, _ = call(client, tmp_path / "ok.png", 2)
    assert Image.open(path).size == (40, 32)


@pytest.mark.parametrize(
    ("sample", "mode", "size"),
    [
        ("cmyk_jpeg", "RGB", (128, 96)),
        ("palette_transparent_png", "RGBA", (128, 96)),
        ("grey_alpha_png", "LA", (128, 96)),
        ("grey16_png", "I;16", (128, 96)),
        ("exif_rotated_jpeg", "RGB", (96, 128)),
        ("animated_gif", "RGB", (128, 96)),
        ("heic_rotated", "RGB", (96, 128)),
        ("avif_rotated", "RGB", (96, 128)),
    ],
)
def test_awkward_images_come_back_upscaled_in_their_own_kind(client, tmp_path, sample, mode, size):
    path, _ = call(client, write(tmp_path, sample), 2)
    out = Image.open(path)
    assert out.size == size
    assert out.mode == mode or (mode == "I;16" and out.mode in ("I;16", "I"))


def test_16_bit_colour_comes_back_16_bit(client, tmp_path):
    import cv2

    path, _ = call(client, write(tmp_path, "rgb16_png"), 2)
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_the_input_pixel_cap_names_the_limit(client, app_module, tmp_path, monkeypatch):
    limited(monkeypatch, input_pixels=1000)
    photo((40, 30)).save(tmp_path / "big.png")
    with pytest.raises(AppError, match=r"40x30 = 1,200 pixels; the limit is 1,000 pixels"):
        call(client, tmp_path / "big.png", 2)


def test_an_unreachable_hub_is_a_clear_message(app_module, monkeypatch, tmp_path):
    import gradio as gr
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*_a, **_k):
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    photo((20, 16)).save(tmp_path / "ok.png")
    with pytest.raises(gr.Error, match="could not download eugenesiow/mdsr-bam .* work offline"):
        app_module.upscale_api(str(tmp_path / "ok.png"), 2, weights="published")


@pytest.mark.skipif(not int8_available(), reason="this PyTorch has no oneDNN int8 convolution")
def test_the_int8_option_runs_int8_and_converts_the_weights_once(app_module):
    first = app_module.upscale_api(str(EXAMPLES / "coffee_lr_x3.png"), 3, precision="int8")[1]
    again = app_module.upscale_api(str(EXAMPLES / "chelsea_lr_x2.png"), 2, precision="int8")[1]
    assert first["precision"] == again["precision"] == "int8"
    bundled = app_module.STORE.get(None, 3).model  # one model for every scale, and one int8 copy of it
    assert app_module.STORE.get(None, 2).model is bundled
    assert app_module.PREPARED.get(bundled, "int8") is app_module.PREPARED.get(bundled, "int8")
    assert set(app_module.PREPARED._copies[bundled]) <= {"int8", "float"}  # one copy per kind, not per call or scale


def test_the_ui_handler_fills_every_output(app_module):
    outputs = app_module.upscale_ui(
        image=str(EXAMPLES / "chelsea_lr_x2.png"),
        scale=2,
        gt_mode=app_module.GT_UPLOAD,
        gt_image=str(EXAMPLES / "chelsea.png"),
        weights=app_module.BUNDLED,
        progress=lambda *a, **k: None,
    )
    (bicubic, output), full = outputs.slider, outputs.output
    assert bicubic.shape == output.shape == full.shape == (300, 450, 3)
    assert outputs.zoom.shape == (256, 3 * 256 + 2 * 6, 3)
    assert "Gain" in outputs.metrics and "tile(s)" in outputs.info and outputs.errors is not None
    assert outputs.region is None  # the whole photo was upscaled
    assert [label for label, _ in outputs.view.panels] == ["bicubic", "MDSR-BAM", "ground truth"]


def test_a_phone_photo_keeps_its_colour_profile_and_orientation_through_the_api(client, tmp_path):
    path, report = client.predict(handle_file(str(write(tmp_path, "phone_jpeg"))), 2, None, "auto", "auto", "webp",
                                  api_name="/upscale")  # fmt: skip
    with Image.open(path) as out:
        assert out.format == "WEBP" and out.size == (96, 128) and out.info["icc_profile"] == colour_profile()
        assert out.getexif().get(0x0110) == "Phone 15"
    assert report["notes"] == []


def test_an_unknown_output_format_through_the_api_names_the_choices(client, tmp_path):
    photo((20, 16)).save(tmp_path / "ok.png")
    with pytest.raises(AppError, match="format must be 'png', 'webp' or 'jpeg'; got 'bmp'"):
        client.predict(handle_file(str(tmp_path / "ok.png")), 2, None, "auto", "auto", "bmp", api_name="/upscale")


def test_a_cmyk_photo_through_the_api_comes_back_rgb_with_the_colour_note(tmp_path):
    import app

    _, report = app.upscale_api(str(write(tmp_path, "cmyk_jpeg")), 2)
    assert (report["width"], report["height"]) == (128, 96)
    assert "a CMYK image: converted to RGB without its colour profile; colours may shift" in report["notes"]


def test_the_examples_inputs_outlive_the_sweep_of_old_uploads(app_module):
    """Gradio copies the examples' images into its upload folder when the page is built; clicking an example
    sends those copies back. The sweep of uploads older than KEEP_RESULTS_S must keep them (it deleted them
    a quarter of an hour after start, and an example then failed as a foreign file)."""
    import os
    import time

    names = {"astronaut_lr_x4.png", "coffee_lr_x3.png", "chelsea_lr_x2.png", "chelsea.png"}
    copies = [p for p in app_module.upload_folder().rglob("*") if p.name in names]
    assert {p.name for p in copies} == names
    stale = time.time() - 2 * app_module.KEEP_RESULTS_S
    for path in copies:
        os.utime(path, (stale, stale))
    app_module.workspace().sweep()
    assert all(path.is_file() for path in copies)


def test_a_position_typed_past_an_end_of_the_zoom_or_region_sliders_means_that_end():
    import app

    for slider in (app.zoom_x, app.zoom_y, app.region_x, app.region_y):
        assert (slider.preprocess(150), slider.preprocess(-5), slider.preprocess(37)) == (100.0, 0.0, 37.0)


def test_the_slider_and_zoom_labels_name_the_pictures_of_this_run():
    import app

    def labels(**truth):
        ask = dict(image=str(EXAMPLES / "chelsea_lr_x2.png"), scale=2, progress=lambda *a, **k: None)
        shown = app.upscale_ui(**ask, **truth).shown()
        return shown[1]["label"], shown[4]["label"]

    assert labels(gt_mode=app.GT_NONE, gt_image=None) == ("bicubic ◀ ▶ MDSR-BAM", "Zoom at 2:1: bicubic | MDSR-BAM")
    with_truth = labels(gt_mode=app.GT_UPLOAD, gt_image=str(EXAMPLES / "chelsea.png"))
    assert with_truth == ("bicubic ◀ ▶ MDSR-BAM", "Zoom at 2:1: bicubic | MDSR-BAM | ground truth")
