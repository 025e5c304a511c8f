"""The `mdsr` command: files and folders, one-line errors, non-zero exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BENCHMARK, ROOT, benchmark_folder, crop, needs_data
from PIL import Image
from sample_files import colour_profile, write

from mdsr.cli import main
from mdsr.quantize import int8_available


def test_upscale_writes_each_image_at_the_scale(tmp_path, tiny_weights, coffee, chelsea):
    inputs = tmp_path / "in"
    inputs.mkdir()
    crop(coffee, (50, 40)).save(inputs / "coffee.png")
    crop(chelsea, (30, 20)).save(inputs / "cat.jpg")
    assert main(["upscale", str(inputs), "-s", "3", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 0
    assert Image.open(tmp_path / "out" / "coffee_x3.png").size == (150, 120)
    assert Image.open(tmp_path / "out" / "cat_x3.png").size == (90, 60)


def test_compare_writes_bicubic_beside_the_output(tmp_path, tiny_weights, coffee):
    crop(coffee, (50, 40)).save(tmp_path / "coffee.png")
    argv = ["upscale", str(tmp_path / "coffee.png"), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]
    main([*argv, "--compare"])
    assert Image.open(tmp_path / "out" / "coffee_x2_compare.png").size == (200, 80)


def test_a_bad_file_in_a_folder_is_reported_and_the_rest_are_processed(tmp_path, tiny_weights, coffee, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    crop(coffee, (50, 40)).save(inputs / "good.png")
    write(inputs, "truncated_png")
    assert main(["upscale", str(inputs), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 1
    assert (tmp_path / "out" / "good_x2.png").exists()
    err = capsys.readouterr().err
    assert "truncated.png: the image data could not be decoded" in err and "1 of 2 images failed" in err


@pytest.mark.skipif(not int8_available(), reason="this PyTorch has no oneDNN int8 convolution")
def test_upscale_in_int8_says_so(tmp_path, tiny_weights, coffee, capsys):
    crop(coffee, (50, 40)).save(tmp_path / "coffee.png")
    argv = ["upscale", str(tmp_path / "coffee.png"), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]
    assert main([*argv, "--precision", "int8"]) == 0
    assert Image.open(tmp_path / "out" / "coffee_x2.png").size == (100, 80)
    assert "[int8, 1 tile(s)" in capsys.readouterr().out


def test_16_bit_and_alpha_files_keep_their_kind(tmp_path, tiny_weights):
    import cv2

    write(tmp_path, "rgb16_png")
    write(tmp_path, "rgba_png")
    files = [str(tmp_path / "rgb16.png"), str(tmp_path / "rgba.png")]
    main(["upscale", *files, "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights])
    assert cv2.imread(str(tmp_path / "out" / "rgb16_x2.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert Image.open(tmp_path / "out" / "rgba_x2.png").mode == "RGBA"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upscale", "missing.png", "-s", "2", "-o", "out"], "error: no such file or folder: missing.png"),
        (
            ["upscale", "{img}", "-s", "2", "-o", "out", "--weights", "nowhere.safetensors"],
            "error: --weights nowhere.safetensors: no such file",
        ),
        (["evaluate", "--data", "{tmp}"], "has no HR/ folder"),
    ],
)
def test_user_errors_are_one_line_and_a_non_zero_exit(tmp_path, coffee, args, message):
    crop(coffee, (20, 20)).save(tmp_path / "img.png")
    argv = [a.format(img=tmp_path / "img.png", tmp=tmp_path) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "mdsr", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=1200
    )
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option", ["--max-pixels", "--max-output-pixels", "--max-memory-mb"])
def test_a_limit_below_one_is_refused_as_a_bad_option(tmp_path, option, capsys, no_model_loaded):
    argv = ["upscale", str(ROOT / "examples" / "chelsea_lr_x2.png"), "-s", "2", "-o", str(tmp_path), option, "-1"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: argument {option}: expected a " + (
        "number above 0, got -1" if option == "--max-memory-mb" else "whole number above 0, got -1"
    ))  # fmt: skip


def test_downscale_names_files_like_the_benchmarks(tmp_path, chelsea):
    chelsea.save(tmp_path / "cat.png")
    assert main(["downscale", str(tmp_path / "cat.png"), "-s", "4", "-o", str(tmp_path / "lr")]) == 0
    assert Image.open(tmp_path / "lr" / "catx4.png").size == (112, 75)


@needs_data
def test_downscale_reproduces_the_set5_lr_files(tmp_path):
    main(["downscale", str(BENCHMARK / "Set5" / "HR"), "-s", "3", "-o", str(tmp_path)])
    for made in sorted(tmp_path.glob("*.png")):
        expected = BENCHMARK / "Set5" / "LR_bicubic_symmetric" / "X3" / made.name
        assert np.array_equal(np.asarray(Image.open(made)), np.asarray(Image.open(expected)))


def test_inputs_that_share_a_name_get_distinct_outputs(tmp_path, tiny_weights, coffee):
    folder = tmp_path / "in"
    folder.mkdir()
    for fmt in ("bmp", "tiff", "webp"):
        crop(coffee, (24, 20)).save(folder / f"rgb.{fmt}")
    assert main(["upscale", str(folder), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "rgb_bmp_x2.png",
        "rgb_tiff_x2.png",
        "rgb_webp_x2.png",
    ]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_input_given_twice_is_upscaled_once(tmp_path, tiny_weights, coffee, capsys, overwrite):
    (tmp_path / "in").mkdir()
    crop(coffee, (24, 20)).save(tmp_path / "in" / "cup.png")
    inputs = [str(tmp_path / "in" / "cup.png"), str(tmp_path / "in" / ".." / "in" / "cup.png"), str(tmp_path / "in")]
    assert main(["upscale", *inputs, "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights, *overwrite]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cup_x2.png"]
    (line,) = capsys.readouterr().out.splitlines()  # written once, and not also reported as kept
    assert line.startswith(f"{inputs[0]} -> {tmp_path / 'out' / 'cup_x2.png'} [")


def test_a_broken_link_in_a_folder_is_skipped_in_one_line(tmp_path, tiny_weights, coffee, capsys):
    (tmp_path / "in").mkdir()
    crop(coffee, (24, 20)).save(tmp_path / "in" / "cup.png")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "moved.png")
    assert main(["upscale", str(tmp_path / "in"), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cup_x2.png"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path / 'in' / 'gone.png'}: skipped (a broken symbolic link to {tmp_path / 'moved.png'})"


def test_a_folder_of_broken_links_alone_is_said_to_hold_no_images(tmp_path, capsys, no_model_loaded):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "moved.png")
    assert main(["upscale", str(tmp_path / "in"), "-s", "2", "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'in'} holds no images (only 1 broken symbolic link)\n"


def test_an_existing_output_is_kept_and_reported_unless_overwrite_is_given(tmp_path, tiny_weights, coffee, capsys):
    crop(coffee, (24, 20)).save(tmp_path / "cup.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cup_x2.png").write_bytes(b"mine")
    args = ["upscale", str(tmp_path / "cup.png"), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]
    assert main(args) == 0
    assert (tmp_path / "out" / "cup_x2.png").read_bytes() == b"mine"
    assert "kept" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0
    assert Image.open(tmp_path / "out" / "cup_x2.png").size == (48, 40)


def test_an_input_named_like_another_inputs_output_stem_gets_its_own_output(tmp_path, tiny_weights, coffee):
    folder = tmp_path / "in"
    folder.mkdir()
    crop(coffee, (24, 20)).save(folder / "rgb.bmp")
    crop(coffee, (20, 16)).save(folder / "rgb.tiff")
    crop(coffee, (16, 12)).save(folder / "rgb_bmp.png")
    assert main(["upscale", str(folder), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 0
    sizes = sorted(Image.open(p).size for p in (tmp_path / "out").iterdir())
    assert sizes == [(32, 24), (40, 32), (48, 40)]


def test_an_output_folder_that_cannot_be_written_is_found_before_any_work(tmp_path, tiny_weights, coffee, capsys):
    crop(coffee, (24, 20)).save(tmp_path / "cup.png")
    (tmp_path / "file").write_text("not a folder")
    args = ["upscale", str(tmp_path / "cup.png"), "-s", "2", "-o", str(tmp_path / "file" / "out")]
    assert main([*args, "--weights", tiny_weights]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write to {tmp_path / 'file' / 'out'}")


def test_an_interrupted_write_leaves_no_partial_output(tmp_path, tiny_weights, coffee, monkeypatch):
    crop(coffee, (24, 20)).save(tmp_path / "cup.png")

    def interrupted(pic, path, **_options):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr("mdsr.serving.save_picture", interrupted)
    args = ["upscale", str(tmp_path / "cup.png"), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]
    assert main(args) == 130
    assert list((tmp_path / "out").iterdir()) == []


def test_an_input_over_the_pixel_limit_is_refused_with_the_limit(tmp_path, tiny_weights, coffee, capsys):
    crop(coffee, (60, 50)).save(tmp_path / "cup.png")
    args = ["upscale", str(tmp_path / "cup.png"), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]
    assert main([*args, "--max-pixels", "2000"]) == 1
    assert "60x50 = 3,000 pixels; the limit is 2,000 pixels" in capsys.readouterr().err


def test_an_input_over_the_memory_limit_is_refused_naming_the_option_that_raises_it(tmp_path, coffee, capsys):
    crop(coffee, (60, 50)).save(tmp_path / "cup.png")
    args = ["upscale", str(tmp_path / "cup.png"), "-s", "2", "-o", str(tmp_path / "out"), "--max-memory-mb", "1"]
    assert main(args) == 1
    assert "the limit per request is 1 MB: --max-memory-mb raises it" in capsys.readouterr().err


def test_weights_auto_offline_without_a_cache_says_it_uses_the_bundled_weights(tmp_path, coffee):
    crop(coffee, (24, 20)).save(tmp_path / "cup.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdsr",
            "upscale",
            str(tmp_path / "cup.png"),
            "-s",
            "2",
            "-o",
            str(tmp_path / "out"),
            "--weights",
            "auto",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    assert "weights: mdsr-bam-x234.safetensors (the Hub is not reachable" in done.stderr


@pytest.mark.slow
def test_torchrun_shares_the_files_between_processes_and_writes_what_one_process_would(tmp_path, tiny_weights, coffee):
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(5):
        crop(coffee, (24 + 4 * n, 20), (10 * n, 0)).save(folder / f"cup{n}.png")
    crop(coffee, (16, 16)).save(folder / "cup0.jpg", quality=95)  # shares a name: the naming rule holds across ranks
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    common = [str(folder), "-s", "2", "--weights", tiny_weights, "--precision", "fp32"]
    shared = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "mdsr", "upscale", *common, "-o", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert shared.returncode == 0, shared.stderr[-3000:]
    assert main(["upscale", *common, "-o", str(tmp_path / "one")]) == 0
    two, one = sorted((tmp_path / "two").iterdir()), sorted((tmp_path / "one").iterdir())
    assert [p.name for p in two] == [p.name for p in one] and len(one) == 6
    assert all(np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))) for a, b in zip(two, one, strict=True))
    assert "6 images in 2 processes: 6 written, 0 kept, 0 failed" in shared.stdout


def test_a_folder_of_phone_photos_is_upscaled_upright(tmp_path, tiny_weights):
    pytest.importorskip("pillow_heif")
    folder = tmp_path / "phone"
    folder.mkdir()
    write(folder, "heic_rotated")
    write(folder, "avif_rotated")
    assert main(["upscale", str(folder), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 0
    assert {p.name: Image.open(p).size for p in (tmp_path / "out").iterdir()} == {
        "phone_avif_x2.png": (96, 128),
        "phone_heic_x2.png": (96, 128),
    }


def test_a_phone_photo_keeps_its_colour_profile_exif_and_orientation(tmp_path, tiny_weights):
    path = write(tmp_path, "phone_jpeg")
    for fmt, suffix in (("png", ".png"), ("jpeg", ".jpg")):
        argv = ["upscale", str(path), "-s", "2", "-o", str(tmp_path / fmt), "--weights", tiny_weights, "--format", fmt]
        assert main(argv) == 0
        with Image.open(tmp_path / fmt / f"phone_x2{suffix}") as out:
            assert out.size == (96, 128) and out.info["icc_profile"] == colour_profile()
            assert out.getexif().get(0x0110) == "Phone 15" and out.getexif().get(0x0112) in (None, 1)


def test_an_unknown_output_format_is_one_line(tmp_path, tiny_weights, capsys):
    path = write(tmp_path, "phone_jpeg")
    assert main(["upscale", str(path), "-s", "2", "-o", str(tmp_path / "o"), "--format", "gif"]) == 2
    assert capsys.readouterr().err.strip() == "error: format must be 'png', 'webp' or 'jpeg'; got 'gif'"


def test_a_format_is_read_as_people_write_it(tmp_path, tiny_weights):
    path = write(tmp_path, "phone_jpeg")
    for written in ("jpg", " WebP", "PNG"):
        assert main(["upscale", str(path), "-s", "2", "-o", str(tmp_path / "o"), "--format", written,
                     "--weights", tiny_weights]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["phone_x2.jpg", "phone_x2.png", "phone_x2.webp"]


class MakesAFolder:
    """Pickled, a call of os.makedirs(``marker``): unpickling it with code allowed would make that folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


NOT_CHECKPOINTS = {
    "weights file": lambda tmp: ROOT / "mdsr" / "weights" / "mdsr-bam-x234.safetensors",
    "list": lambda tmp: save(tmp / "list.pt", [1, 2, 3]),
    "dict of other things": lambda tmp: save(tmp / "dict.pt", {"config": {}, "weights": torch.zeros(2)}),
    "text": lambda tmp: write_bytes(tmp / "notes.pt", b"not a checkpoint"),
    "photo": lambda tmp: ROOT / "examples" / "chelsea_lr_x2.png",
    "code": lambda tmp: save(tmp / "code.pt", MakesAFolder(tmp / "made")),
}


def save(path: Path, value) -> Path:
    torch.save(value, path)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", NOT_CHECKPOINTS)
def test_export_of_a_file_that_is_no_training_checkpoint_is_one_line_naming_it(tmp_path, capsys, kind):
    path = NOT_CHECKPOINTS[kind](tmp_path)
    assert main(["export", str(path), str(tmp_path / "out.safetensors")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {path} is not a training checkpoint (mdsr train's last.pt/best.pt)"
    ]
    assert not (tmp_path / "out.safetensors").exists()


def test_export_never_runs_the_code_a_checkpoint_carries(tmp_path):
    path = save(tmp_path / "code.pt", MakesAFolder(tmp_path / "made"))
    main(["export", str(path), str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "made").exists()


@pytest.fixture
def no_model_loaded(monkeypatch):
    """Any model loaded fails the test: what these refuse is refused before the work."""

    def load(*args, **kwargs):
        pytest.fail("a model was loaded before the inputs and outputs were checked")

    monkeypatch.setattr("mdsr.weights.load_for_scales", load)


@pytest.fixture
def benchmark(tmp_path, coffee) -> Path:
    """A benchmark folder of one HR photo."""
    return benchmark_folder(tmp_path / "bench", crop(coffee, (48, 36)), "cup.png")


def test_evaluate_refuses_a_json_path_it_cannot_write_before_any_work(tmp_path, benchmark, capsys, no_model_loaded):
    (tmp_path / "notes").write_text("a file, not a folder")
    argv = ["evaluate", "--data", str(benchmark), "--scales", "2", "--json", str(tmp_path / "notes" / "r.json")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'notes'} is a file; --json writes into a folder"


def test_evaluate_makes_the_json_folder_and_writes_the_results_there(tmp_path, benchmark, tiny_weights):
    out = tmp_path / "results" / "r.json"
    argv = ["evaluate", "--data", str(benchmark), "--scales", "2", "--weights", tiny_weights, "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())[0]["images"] == 1


def test_evaluate_names_a_file_in_hr_that_is_not_an_image(benchmark, capsys, no_model_loaded):
    notes = benchmark / "HR" / "notes.txt"
    notes.write_text("not an image")
    assert main(["evaluate", "--data", str(benchmark), "--scales", "2"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {notes}: the file is not an image that can be read")


def test_evaluate_keeps_an_existing_json_file_unless_overwrite(tmp_path, benchmark, capsys, no_model_loaded):
    kept = tmp_path / "notes.json"
    kept.write_text('{"mine": true}')
    argv = ["evaluate", "--data", str(benchmark), "--scales", "2", "--json", str(kept)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: --json {kept} already exists (--overwrite replaces it)"
    assert kept.read_text() == '{"mine": true}'


def test_evaluate_overwrite_replaces_the_json_file(tmp_path, benchmark, tiny_weights):
    out = tmp_path / "r.json"
    out.write_text("[]")
    argv = ["evaluate", "--data", str(benchmark), "--scales", "2", "--weights", tiny_weights, "--json", str(out)]
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(out.read_text())[0]["images"] == 1


def test_evaluate_never_writes_the_json_over_an_image_of_its_benchmark(benchmark, capsys, no_model_loaded):
    image = benchmark / "HR" / "cup.png"
    before = image.read_bytes()
    argv = ["evaluate", "--data", str(benchmark), "--scales", "2", "--json", str(image), "--overwrite"]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: --json {image} is a file of the benchmark it evaluates, never replaced"
    )
    assert image.read_bytes() == before


def test_evaluate_names_an_image_too_small_for_ssim_before_any_work(benchmark, coffee, capsys, no_model_loaded):
    small = benchmark / "HR" / "small.png"
    crop(coffee, (16, 16)).save(small)
    assert main(["evaluate", "--data", str(benchmark), "--scales", "4"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {small}: a 16x16 image is too small to measure at x4: SSIM needs at least 20 pixels a side "
        "(11 once cropped to a multiple of 4 and 4 shaved off each border)"
    )


def test_onnx_export_refuses_the_options_it_cannot_keep(tmp_path, capsys):
    assert main(["export", "--onnx", str(tmp_path / "onnx"), "--fp16"]) == 2
    assert "--fp16 and --note are for .safetensors weights" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()


def test_a_missing_weights_folder_given_as_a_path_is_said_to_be_missing(tmp_path, capsys):
    missing = tmp_path / "mydir"
    assert main(["upscale", str(ROOT / "examples" / "chelsea_lr_x2.png"), "-s", "2", "-o", str(tmp_path / "out"),
                 "--weights", str(missing)]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip() == f"error: --weights {missing}: no such file or folder"


def test_a_missing_weights_file_is_named_with_its_folder(tmp_path, capsys):
    missing = tmp_path / "runs" / "weights.safetensors"
    assert main(["upscale", str(ROOT / "examples" / "chelsea_lr_x2.png"), "-s", "2", "-o", str(tmp_path / "out"),
                 "--weights", str(missing)]) != 0  # fmt: skip
    assert capsys.readouterr().err.strip() == f"error: --weights {missing}: no such file"
