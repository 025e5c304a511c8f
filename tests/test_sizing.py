"""Any output size: factors from 1.1 to 8 and target sizes, through the library, the CLI and the API."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import ROOT, tiny
from PIL import Image
from sample_files import photo

import mdsr
from mdsr.cli import main
from mdsr.imaging import read_image, resize_picture
from mdsr.inference import upscale_picture
from mdsr.serving import DEMO_LIMITS, Item, RefusedError, Request, admit
from mdsr.sizing import Target, parse_size, plan, stages_for

EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize(
    ("factor", "stages"),
    [(1.1, (2,)), (1.5, (2,)), (2, (2,)), (2.5, (3,)), (3.5, (4,)), (5, (2, 3)), (6, (2, 3)), (8, (2, 4))],
)
def test_the_network_runs_at_the_cheapest_trained_scales_that_reach_the_factor(factor, stages):
    assert stages_for(factor) == stages


def test_sizes_follow_matlabs_rounding_and_keep_the_aspect_ratio():
    assert plan((101, 60), 1.5).size == (152, 90)  # ceil(151.5), as imresize computes it
    assert plan((200, 100), Target(width=500)).size == (500, 250)
    assert plan((200, 100), parse_size("x300")).size == (600, 300)
    assert plan((200, 100), parse_size("1000x1000")).size == (1000, 500)  # fit inside
    assert plan((200, 100), Target(width=400, height=250)).size == (400, 250)  # both: that exact size


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (0, r"the scale must be from 1.1 to 8; got 0"),
        (0.5, r"the scale must be from 1.1 to 8; got 0.5"),
        (9, r"the scale must be from 1.1 to 8; got 9"),
        ("abc", r"the scale must be a number from 1.1 to 8; got 'abc'"),
        (float("nan"), r"the scale must be a number from 1.1 to 8"),
        (
            parse_size("100000x"),
            r"a width of 100000 makes a 200x100 image 100000x50000, 500x; the output must be 1.1 to 8",
        ),
        (parse_size("210x"), r"1.05x; the output must be 1.1 to 8 times the input"),
        ("1_5", r"the scale must be a number from 1.1 to 8, written without underscores; got '1_5'"),
    ],
)
def test_a_size_out_of_reach_is_one_sentence(target, message):
    with pytest.raises(ValueError, match=message):
        plan((200, 100), target)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, r"a size target is a factor, a width and/or a height, or a fit box: one of them"),
        ({"width": 640, "fit": (640, 480)}, r"one of them"),
        ({"width": 0}, r"width is a number of pixels, at least 1; got 0"),
        ({"height": 2.5}, r"height is a number of pixels, at least 1; got 2.5"),
        ({"height": True}, r"height is a number of pixels, at least 1; got True"),
        ({"fit": (640, -1)}, r"the fit box's height is a number of pixels, at least 1; got -1"),
        ({"fit": [640, 480]}, r"fit is a \(width, height\) box; got \[640, 480\]"),
        ({"factor": 9}, r"the scale must be from 1.1 to 8; got 9"),
    ],
)
def test_a_target_is_one_request_in_whole_pixels_or_a_sentence(fields, message):
    with pytest.raises(ValueError, match=message):
        Target(**fields)


def test_a_size_of_zero_is_refused_as_written():
    with pytest.raises(ValueError, match=r"width is a number of pixels, at least 1; got 0"):
        parse_size("0x480")


@pytest.mark.parametrize("factor", [1.0999999999, 8.0000000001])
def test_a_refused_factor_is_shown_as_given_not_rounded_into_the_range(factor):
    with pytest.raises(ValueError) as refusal:
        plan((200, 100), factor)
    assert str(refusal.value) == f"the scale must be from 1.1 to 8; got {factor!r}"


@pytest.mark.parametrize("factor", [10**400, -(10**400)])
def test_an_integer_past_floats_range_is_refused_in_one_sentence(factor):
    with pytest.raises(ValueError, match=r"^the scale must be from 1.1 to 8; got -?10000000000\d+\.\.\.$"):
        plan((200, 100), factor)


def test_a_size_out_of_reach_on_one_side_names_that_side():
    with pytest.raises(ValueError) as refusal:
        plan((512, 4), Target(width=570))  # the width is 1.11x; the height stays 4
    assert str(refusal.value) == (
        "a width of 570 makes a 512x4 image 570x4: its height 4 -> 4 is 1x; each side must be 1.1 to 8 times the input"
    )


def test_a_sides_ratio_just_out_of_reach_is_not_rounded_into_it():
    with pytest.raises(ValueError, match=r"its width 10000 -> 10999 is 1\.0999x; each side must be 1\.1 to 8 times"):
        plan((10000, 10000), Target(width=10999, height=20000))


@pytest.mark.parametrize("text", ["12", "x", "1920*1080", "-5x10", [1920, 1080]])
def test_a_size_written_otherwise_names_the_forms(text):
    with pytest.raises(ValueError, match=r"a size is WIDTHxHEIGHT \(to fit inside\), WIDTHx or xHEIGHT"):
        parse_size(text)


def test_a_factor_between_trained_scales_is_the_network_then_matlabs_bicubic(coffee):
    pic = read_image(coffee.crop((0, 0, 40, 30)))
    model = tiny()
    at_2x, _ = upscale_picture(model, pic, 2, precision="fp32")
    out = mdsr.upscale(model, coffee.crop((0, 0, 40, 30)), 1.5, precision="fp32")
    assert out.size == (60, 45)
    assert np.array_equal(np.asarray(out), np.asarray(mdsr.imaging.picture_to_pil(resize_picture(at_2x, (60, 45)))))


def test_the_trained_scales_are_the_network_alone(coffee):
    model, image = tiny(), coffee.crop((0, 0, 40, 30))
    pic = read_image(image)
    by_factor = mdsr.upscale(model, image, 3, precision="fp32")
    assert np.array_equal(
        np.asarray(by_factor),
        np.asarray(mdsr.imaging.picture_to_pil(upscale_picture(model, pic, 3, precision="fp32")[0])),
    )


def test_admission_counts_the_work_of_both_stages(tmp_path):
    photo((100, 80)).save(tmp_path / "cup.png")
    admitted = admit(Request((Item("cup.png", str(tmp_path / "cup.png")),), Target(factor=6)), DEMO_LIMITS, resident=550)
    assert admitted.plans[0].run.scales == (2, 3) and admitted.work == 200 * 160 + 600 * 480
    with pytest.raises(RefusedError, match=r"600x480 output pixels \(the network's 2x then 3x\) = 320,000; the limit"):
        admit(Request((Item("cup.png", str(tmp_path / "cup.png")),), Target(factor=6)), _with(work_pixels=300_000), resident=550)


def _with(**changes):
    import dataclasses

    return dataclasses.replace(DEMO_LIMITS, **changes)


def test_the_cli_takes_a_factor_a_width_a_height_or_a_box(tmp_path, tiny_weights, coffee):
    coffee.crop((0, 0, 40, 30)).save(tmp_path / "cup.png")
    base = ["upscale", str(tmp_path / "cup.png"), "-o", str(tmp_path / "out"), "--weights", tiny_weights]
    asks = (["-s", "2.5"], ["-s", "2.0000001"], ["--width", "100"], ["--height", "90"], ["--fit", "200x100"],
            ["--width", "200", "--height", "100"])  # fmt: skip
    for extra in asks:
        assert main([*base, *extra]) == 0
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "out").iterdir()}
    assert sizes == {  # each ask its own name: a rerun never keeps a file made for another
        "cup_x2.5.png": (100, 75),
        "cup_x2.0000001.png": (81, 61),
        "cup_w100.png": (100, 75),
        "cup_h90.png": (120, 90),
        "cup_fit200x100.png": (133, 100),
        "cup_200x100.png": (200, 100),
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-s", "0"], "error: the scale must be from 1.1 to 8; got 0"),
        (["-s", "0.5"], "error: the scale must be from 1.1 to 8; got 0.5"),
        (["-s", "9"], "error: the scale must be from 1.1 to 8; got 9"),
        (["-s", "abc"], "error: the scale must be a number from 1.1 to 8; got 'abc'"),
        (["-s", "1_5"], "error: the scale must be a number from 1.1 to 8, written without underscores; got '1_5'"),
        (["-s", "0_2"], "error: the scale must be a number from 1.1 to 8, written without underscores; got '0_2'"),
        (["-s", "1.0999999999"], "error: the scale must be from 1.1 to 8; got 1.0999999999"),
        (["-s", "8.0000000001"], "error: the scale must be from 1.1 to 8; got 8.0000000001"),
        (["--width", "0"], "error: --width and --height are numbers of pixels, at least 1"),
        (["-s", "2", "--width", "100"], "error: give --scale, or --width and/or --height, or --fit WxH"),
    ],
)
def test_the_cli_answers_a_bad_size_with_one_line(tmp_path, tiny_weights, coffee, capsys, extra, message):
    coffee.crop((0, 0, 40, 30)).save(tmp_path / "cup.png")
    assert (
        main(["upscale", str(tmp_path / "cup.png"), "-o", str(tmp_path / "out"), "--weights", tiny_weights, *extra])
        == 2
    )
    assert capsys.readouterr().err.strip() == message


def test_a_width_out_of_reach_is_the_images_row_in_the_cli(tmp_path, tiny_weights, coffee, capsys):
    coffee.crop((0, 0, 40, 30)).save(tmp_path / "cup.png")
    argv = [
        "upscale",
        str(tmp_path / "cup.png"),
        "-o",
        str(tmp_path / "out"),
        "--weights",
        tiny_weights,
        "--width",
        "100000",
    ]
    assert main(argv) == 1
    assert (
        "a width of 100000 makes a 40x30 image 100000x75000, 2,500x; the output must be 1.1 to 8"
        in capsys.readouterr().err
    )


def test_the_api_takes_a_factor_or_a_size(tmp_path):
    import app

    photo((40, 30)).save(tmp_path / "cup.png")
    assert app.upscale_api(str(tmp_path / "cup.png"), 1.5)[1]["width"] == 60
    _, report = app.upscale_api(str(tmp_path / "cup.png"), None, size="x90")
    assert (report["width"], report["height"]) == (120, 90)
    with pytest.raises(app.gr.Error, match="a size is WIDTHxHEIGHT"):
        app.upscale_api(str(tmp_path / "cup.png"), None, size="big")
    with pytest.raises(app.gr.Error, match="the scale must be from 1.1 to 8; got 9"):
        app.upscale_api(str(tmp_path / "cup.png"), 9)
    with pytest.raises(app.gr.Error, match="the scale must be given .*, or a size such as 1920x1080"):
        app.upscale_api(str(tmp_path / "cup.png"), None)


def test_a_factor_with_the_image_as_its_own_truth_is_scored_at_the_images_size():
    import app

    result = app.upscale_ui(
        image=str(EXAMPLES / "chelsea.png"), scale=2, gt_mode=app.GT_SELF, gt_image=None,
        weights=app.BUNDLED, custom_size="1.5", progress=lambda *a, **k: None,
    )  # fmt: skip
    assert result.output.shape == (300, 451, 3) and "| x1.49" in result.metrics and "Gain" in result.metrics


@pytest.mark.parametrize("typo", ["1..5", "."])
def test_a_typo_in_the_uis_other_size_is_named_in_one_sentence(typo):
    import app

    with pytest.raises(app.gr.Error, match=rf"another size is a factor from 1.1 to 8 .*; got '{re.escape(typo)}'"):
        app.upscale_ui(
            image=str(EXAMPLES / "chelsea.png"), scale=2, gt_mode=app.GT_SELF, gt_image=None,
            weights=app.BUNDLED, custom_size=typo, progress=lambda *a, **k: None,
        )  # fmt: skip


@pytest.mark.parametrize(("factor", "lr_size"), [("6", (13, 10)), ("1.1", (72, 54)), ("8", (10, 7))])
def test_a_small_image_as_its_own_truth_runs_at_any_factor_the_field_allows(tmp_path, factor, lr_size):
    import app

    photo((80, 60)).save(tmp_path / "small.png")  # 6x: a 78x60 crop and 13x10; 1.1x: 80/73 would be under 1.1
    result = app.upscale_ui(
        image=str(tmp_path / "small.png"), scale=2, gt_mode=app.GT_SELF, gt_image=None,
        weights=app.BUNDLED, custom_size=factor, progress=lambda *a, **k: None,
    )  # fmt: skip
    assert result.view.lr.shape[1::-1] == lr_size and "Gain" in result.metrics


def test_a_photo_over_the_demos_limits_gives_its_largest_region_within_them(monkeypatch, tmp_path, astronaut):
    from conftest import limited

    import app

    limited(monkeypatch, input_pixels=20_000)
    astronaut.save(tmp_path / "photo.png")  # 512x512: 262,144 pixels
    run = lambda **region: app.upscale_ui(  # noqa: E731
        image=str(tmp_path / "photo.png"), scale=2, gt_mode=app.GT_NONE, gt_image=None,
        weights=app.BUNDLED, progress=lambda *a, **k: None, **region,
    )  # fmt: skip
    detailed = run()
    assert detailed.output.shape[0] * detailed.output.shape[1] <= 4 * 20_000 and detailed.region is not None
    assert "**region:** the 140x140 part at" in detailed.info and "the limit is 20,000 pixels" in detailed.info
    corner = run(region_auto=False, region_x=0, region_y=0)
    assert "the 140x140 part at (0, 0) was upscaled" in corner.info


def test_the_api_refuses_a_photo_over_the_limits_with_the_same_sentence(monkeypatch, tmp_path, astronaut):
    from conftest import limited

    import app

    limited(monkeypatch, input_pixels=20_000)
    astronaut.save(tmp_path / "photo.png")
    with pytest.raises(app.gr.Error, match=r"the image is 512x512 = 262,144 pixels; the limit is 20,000 pixels"):
        app.upscale_api(str(tmp_path / "photo.png"), 2)
