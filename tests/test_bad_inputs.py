"""The bad-input corpus: every file a user might send by mistake (or on purpose), through both the API and
the CLI, each with the one clear sentence it must produce; and the API's argument checks."""

from __future__ import annotations

import re

import pytest
from conftest import running_app
from sample_files import photo, write

from mdsr.cli import main

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

NOT_AN_IMAGE = r"the file is not an image that can be read \(PNG, JPEG, WebP, AVIF, HEIC, BMP, TIFF or GIF\)"
NOT_DECODED = r"the image data could not be decoded \(.+\)"
BAD_FILES = {
    "not_an_image": NOT_AN_IMAGE,
    "empty_file": NOT_AN_IMAGE,
    "html_named_png": NOT_AN_IMAGE,
    "svg_image": NOT_AN_IMAGE,
    "pdf_named_jpg": NOT_AN_IMAGE,
    "zip_named_png": NOT_AN_IMAGE,
    "random_bytes": NOT_AN_IMAGE,
    "png_signature_only": NOT_AN_IMAGE,
    "png_bad_crc": NOT_AN_IMAGE,
    "truncated_png": NOT_DECODED,
    "truncated_jpeg": NOT_DECODED,
    "truncated_webp": NOT_DECODED,
    "truncated_gif": NOT_DECODED,
    "truncated_bmp": NOT_DECODED,
    "truncated_tiff": NOT_DECODED,
    "one_pixel": r"the image is 1x1; it must be at least 2 pixels on each side",
    "one_pixel_wide": r"the image is 1x40; it must be at least 2 pixels on each side",
    "one_pixel_high": r"the image is 40x1; it must be at least 2 pixels on each side",
    "decompression_bomb": r"declares too many pixels to open safely \(900,000,000 pixels\), a possible decompression bomb",
    "text_bomb_png": r"metadata \(text or a colour profile\) that expands to too much data .* decompression bomb",
    "profile_bomb_png": r"metadata \(text or a colour profile\) that expands to too much data .* decompression bomb",
}


@pytest.fixture(scope="module")
def client():
    with running_app() as url:
        yield Client(url, verbose=False)


@pytest.mark.parametrize(("sample", "message"), BAD_FILES.items())
def test_the_api_answers_a_bad_file_with_its_sentence(client, tmp_path, sample, message):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(write(tmp_path, sample))), 2, api_name="/upscale")


@pytest.mark.parametrize(("sample", "message"), BAD_FILES.items())
def test_the_cli_answers_a_bad_file_with_one_line_and_a_non_zero_exit(tmp_path, capsys, tiny_weights, sample, message):
    weights = tiny_weights
    path = write(tmp_path, sample)
    assert main(["upscale", str(path), "-s", "2", "-o", str(tmp_path / "out"), "--weights", weights]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: 1 of 1 images failed"
    assert err[0].startswith(f"error: {path}: ") and len(err) == 2
    assert re.search(message, err[0])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("precision", ["fp16", "INT8", 8, [1]])
def test_an_unknown_precision_names_the_choices(client, tmp_path, precision):
    photo((40, 30)).save(tmp_path / "small.png")
    with pytest.raises(AppError, match=r"auto.*fp32.*bf16.*int8"):
        client.predict(handle_file(str(tmp_path / "small.png")), 2, None, precision, api_name="/upscale")


def test_a_ground_truth_declaring_the_wrong_size_is_refused_from_its_header(client, tmp_path):
    photo((40, 30)).save(tmp_path / "small.png")
    truth = handle_file(str(write(tmp_path, "huge_declared_truth")))
    with pytest.raises(AppError, match=r"the ground truth is 4096x4096; for a 40x30 input at 2x it must be 80x60"):
        client.predict(handle_file(str(tmp_path / "small.png")), 2, truth, api_name="/upscale")


@pytest.mark.parametrize(
    ("sample", "message"), [("text_bomb_png", "expands to too much data"), ("not_an_image", NOT_AN_IMAGE)]
)
def test_a_bad_ground_truth_file_is_named_as_such(client, tmp_path, sample, message):
    photo((40, 30)).save(tmp_path / "small.png")
    with pytest.raises(AppError, match=message):
        client.predict(
            handle_file(str(tmp_path / "small.png")), 2, handle_file(str(write(tmp_path, sample))), api_name="/upscale"
        )
