"""The hostile review's cases through every entry point: crafted weights through the UI's "my weights" and
the CLI, malformed calls through raw HTTP. Each gets one sentence, never an empty error or a traceback."""

from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import ROOT, call, data_url, running_app
from sample_files import photo, write
from test_weights_hostile import CORPUS, write_corpus

from mdsr.cli import main

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return write_corpus(tmp_path_factory.mktemp("crafted"))


@pytest.mark.parametrize("name", list(CORPUS))
def test_crafted_weights_uploaded_in_the_demo_get_their_sentence(corpus, name, caplog):
    import app

    with caplog.at_level(logging.WARNING), pytest.raises(app.gr.Error) as refused:
        app.upscale_ui(
            image=str(EXAMPLES / "chelsea_lr_x2.png"), scale=2, gt_mode=app.GT_NONE, gt_image=None,
            weights=app.MINE, my_file=str(corpus[name]), progress=lambda *a, **k: None,
        )  # fmt: skip
    assert re.search(CORPUS[name][2], refused.value.message) and str(corpus[name].parent) not in refused.value.message
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("name", list(CORPUS))
def test_crafted_weights_given_to_the_cli_get_one_line_and_a_non_zero_exit(corpus, name, tmp_path, capsys):
    argv = ["upscale", str(EXAMPLES / "chelsea_lr_x2.png"), "-s", "2", "-o", str(tmp_path), "--weights", str(corpus[name])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(CORPUS[name][2], err[0])
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def url():
    with running_app() as address:
        yield address


RAW_CASES = {
    "scale as text": ([data_url(photo((40, 30))), "two", None, "auto", "auto"], "scale must be a number from 1.1 to 8"),
    "unknown precision": ([data_url(photo((40, 30))), 2, None, "fp8", "auto"], "precision must be"),
    "unknown weights": ([data_url(photo((40, 30))), 2, None, "auto", "mine"], "weights must be 'auto', 'bundled'"),
    "weights as a list": ([data_url(photo((40, 30))), 2, None, "auto", ["auto"]], "weights must be"),
    "server file": ([{"path": "/etc/passwd"}, 2, None, "auto", "auto"], "only files uploaded with the request"),
    "no image": ([None, 2, None, "auto", "auto"], "Upload an image first"),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_a_malformed_raw_call_is_answered_with_its_sentence(url, case):
    data, message = RAW_CASES[case]
    event, payload = call(url, data)
    assert event == "error" and payload not in ("null", "", None) and message in payload


TAKES = "the /upscale API takes (image, scale[, ground_truth, precision, weights, format, size])"


@pytest.mark.parametrize(("data", "got"), [([], "got 0 values"), ([data_url(photo())], "got 1 value")])
def test_a_raw_call_without_its_scale_is_told_the_arguments_the_api_takes(url, data, got):
    event, payload = call(url, data, fill=False)
    assert event == "error" and f"{TAKES}; {got}" in payload and "object at 0x" not in payload


def test_a_raw_call_of_an_image_and_a_scale_alone_runs_with_the_other_arguments_defaults(url):
    event, payload = call(url, [data_url(photo((40, 30))), 2], fill=False)
    output, report = json.loads(payload)
    assert event == "complete" and (report["width"], report["height"], report["metrics"]) == (80, 60, None)
    assert output["path"].endswith("_x2.png")  # no ground truth, and the PNG format


def test_a_folder_inside_gradios_cache_is_answered_like_a_missing_file(url):
    import app

    folder, missing = app.upload_folder(), app.upload_folder() / "no-such-file.png"
    answers = {call(url, [{"path": str(p)}, 2, None, "auto", "auto"])[1] for p in (folder, missing)}
    assert len(answers) == 1 and "only files uploaded with the request" in answers.pop()


def test_a_bad_file_through_raw_http_names_what_is_wrong_with_it(url, tmp_path):
    path = write(tmp_path, "truncated_png")
    event, payload = call(url, [data_url_of(path), 2, None, "auto", "auto"])
    assert event == "error" and "could not be decoded" in json.loads(payload)["error"]


def data_url_of(path) -> dict:
    import base64

    encoded = base64.b64encode(path.read_bytes()).decode()
    return {"url": "data:image/png;base64," + encoded, "meta": {"_type": "gradio.FileData"}}
