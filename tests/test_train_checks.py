"""What `mdsr train` refuses before any work, each in one sentence: bad numbers, a run folder it would
mix with another run, a file where a folder goes, a validation folder it could not use."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import torch
from conftest import benchmark_folder, crop, super_image_folder, tiny

from mdsr.cli import main
from mdsr.train import TrainConfig
from mdsr.weights import load_model


@pytest.fixture
def hr(tmp_path, astronaut, coffee) -> Path:
    folder = tmp_path / "hr"
    folder.mkdir()
    for name, image in (("astronaut", astronaut), ("coffee", coffee)):
        crop(image, (96, 80), (100, 80)).save(folder / f"{name}.png")
    return folder


def tiny_train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", str(data), "--out", str(out), "--preset", "tiny", "--scales", "2", "--patch-size", "16",
        "--batch-size", "2", "--steps", "2", "--precision", "fp32", "--log-every", "1", *extra,
    ]  # fmt: skip


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error") or "Traceback" in line]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--log-every", "0"),
        ("--checkpoint-every", "0"),
        ("--val-every", "0"),
        ("--decay-every", "0"),
        ("--patch-size", "0"),
        ("--patch-size", "-3"),
        ("--batch-size", "-1"),
        ("--batch-size", "0"),
        ("--steps", "-5"),
        ("--warmup", "-1"),
        ("--lr", "nan"),
        ("--lr", "0"),
        ("--threads", "-1"),
    ],
)
def test_a_bad_number_is_refused_in_one_line_naming_its_option_before_any_work(hr, tmp_path, capsys, option, value):
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, option, value)) == 2
    errors = error_lines(capsys)
    assert len(errors) == 1 and errors[0].startswith(f"error: {option} must be")
    assert not out.exists()


def test_the_library_config_refuses_a_bad_number_too():
    with pytest.raises(ValueError, match=r"^--decay-every must be a whole number of at least 1, got 0$"):
        TrainConfig(data=("d",), out="o", decay_every=0)


def test_a_new_run_into_a_folder_holding_a_run_is_refused_and_changes_nothing(hr, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_train(hr, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(tiny_train(hr, out, "--steps", "4")) == 2
    assert error_lines(capsys) == [
        f"error: {out} already holds a training run (last.pt, log.jsonl, weights.safetensors, curve.png); "
        "--resume continues it, or give another --out"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_where_there_is_no_last_pt_says_it_starts_a_new_run(hr, tmp_path, caplog):
    out = tmp_path / "typo"
    assert main(tiny_train(hr, out, "--resume")) == 0
    assert f"--resume: {out} holds no last.pt; starting a new run there" in caplog.messages


def test_resume_into_a_run_folder_without_last_pt_is_refused(hr, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text("")
    assert main(tiny_train(hr, out, "--resume")) == 2
    assert error_lines(capsys) == [f"error: {out} holds a training run (log.jsonl) but no last.pt to resume from"]


@pytest.mark.parametrize("option", ["--out", "--cache-dir"])
def test_a_file_where_a_run_writes_a_folder_is_refused_in_one_sentence(hr, tmp_path, capsys, option):
    blocking = tmp_path / "a_file"
    blocking.write_text("mine")
    args = tiny_train(hr, blocking if option == "--out" else tmp_path / "run")
    if option == "--cache-dir":
        args += ["--cache-dir", str(blocking)]
    assert main(args) == 2
    assert error_lines(capsys) == [f"error: {option} {blocking} is a file; mdsr train writes into a folder there"]
    assert blocking.read_text() == "mine"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_by_a_signal_saves_then_exits_with_the_signals_status(hr, tmp_path, monkeypatch, signum):
    from mdsr import train

    real_step = train.train_step

    def step_then_signal(run, net, data):
        result = real_step(run, net, data)
        if run.step == 1:
            signal.raise_signal(signum)  # as if from the terminal or a scheduler, mid-run
        return result

    monkeypatch.setattr(train, "train_step", step_then_signal)
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, "--steps", "6")) == 128 + signum
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1
    assert (out / "weights.safetensors").exists()


def test_a_hub_dataset_without_the_datasets_package_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an installation without the extra has
    assert main(["train", "--hf-dataset", "eugenesiow/Div2k", "--out", str(tmp_path / "run"), "--preset", "tiny"]) == 2
    assert error_lines(capsys) == [
        'error: --hf-dataset needs the datasets package, which is not installed: pip install -e ".[datasets]"'
    ]


def test_a_run_folder_inside_the_training_data_is_never_read_as_training_data(hr, tmp_path):
    out = hr / "run"
    assert main(tiny_train(hr, out, "--checkpoint-every", "1")) == 0
    assert (out / "curve.png").exists()
    assert main(tiny_train(hr, out, "--steps", "3", "--resume")) == 0
    assert json.loads(load_model(out / "weights.safetensors").metadata["images"]) == 2  # the two photos only


@pytest.fixture
def val(tmp_path, chelsea) -> Path:
    """A validation folder with one good image in HR/."""
    return benchmark_folder(tmp_path / "val", crop(chelsea, (40, 40)), "good.png")


def test_a_validation_file_that_is_no_image_is_named_before_training(hr, val, tmp_path, capsys):
    (val / "HR" / "README.txt").write_text("held-out images")
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, "--val-data", str(val))) == 2
    errors = error_lines(capsys)
    assert len(errors) == 1 and errors[0].startswith(f"error: {val / 'HR' / 'README.txt'}: ")
    assert not (out / "log.jsonl").exists()


def test_a_validation_image_too_small_to_measure_is_named_before_training(hr, val, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (5, 5)).save(val / "HR" / "tiny.png")
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, "--val-data", str(val))) == 2
    assert error_lines(capsys) == [
        f"error: {val / 'HR' / 'tiny.png'}: a 5x5 image is too small to measure at x2: SSIM needs at least 16 "
        "pixels a side (11 once cropped to a multiple of 2 and 2 shaved off each border)"
    ]
    assert not (out / "log.jsonl").exists()


def test_a_validation_folder_without_hr_is_named_with_its_option(hr, tmp_path, capsys):
    (tmp_path / "val").mkdir()
    assert main(tiny_train(hr, tmp_path / "run", "--val-data", str(tmp_path / "val"))) == 2
    assert error_lines(capsys) == [f"error: --val-data {tmp_path / 'val'} has no HR/ folder of ground-truth images"]


def test_init_from_a_super_image_folder_loads_the_file_of_the_one_scale_trained(hr, tmp_path):
    folder = tmp_path / "mdsr-bam"
    super_image_folder(folder, tiny(scales=(3,)), 3)
    super_image_folder(folder, tiny(scales=(2,)), 2)
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, "--init", str(folder), "--steps", "1", "--lr", "1e-9")) == 0
    trained, start = load_model(out / "weights.safetensors"), tiny(scales=(2,))
    assert torch.allclose(trained.upsample["2"][0][0].weight, start.upsample["2"][0][0].weight, atol=1e-6)


def test_init_from_a_super_image_folder_with_several_scales_is_refused_before_any_work(hr, tmp_path, capsys):
    folder = super_image_folder(tmp_path / "mdsr-bam", tiny(scales=(2,)), 2)
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, "--init", str(folder), "--scales", "2", "3")) == 2
    assert error_lines(capsys) == [
        f"error: --init {folder} is a super-image folder or Hub id, which holds one model per scale: train one "
        "scale from it (--scales 2, 3 or 4)"
    ]
    assert not out.exists()


def test_fine_tuned_weights_record_and_show_where_they_started(hr, tmp_path):
    from mdsr.weights import describe, save_weights

    start = save_weights(tiny(scales=(2,)), tmp_path / "start.safetensors")
    out = tmp_path / "run"
    assert main(tiny_train(hr, out, "--init", str(start))) == 0
    assert load_model(out / "weights.safetensors").metadata["init"] == str(start)
    assert describe(out / "weights.safetensors") == "fine-tuned from start.safetensors; 2 steps"


def test_a_data_folder_without_images_is_refused_before_the_run_folder_is_made(tmp_path, capsys):
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    out = tmp_path / "run"
    assert main(tiny_train(empty, out)) == 2
    assert error_lines(capsys) == [f"error: no image files in {empty} (by their names: .png, .jpg, ...)"]
    assert not out.exists()
