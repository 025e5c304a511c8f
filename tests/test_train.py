"""Training: the data pipeline, learning, atomic resumable checkpoints, signals and torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import crop

from mdsr.data import PatchDataset, dihedral, step_generator
from mdsr.imaging import bicubic_downscale
from mdsr.inference import CpuKind
from mdsr.train import NonFiniteLossError, TrainConfig, train, training_precision
from mdsr.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def image_folder(tmp_path, astronaut, coffee, chelsea) -> Path:
    folder = tmp_path / "hr"
    folder.mkdir()
    for name, image in (("astronaut", astronaut), ("coffee", coffee), ("chelsea", chelsea)):
        crop(image, (160, 120), (100, 80)).save(folder / f"{name}.png")
    return folder


def test_lr_and_hr_patches_are_aligned_at_every_scale(astronaut):
    data = PatchDataset.from_arrays([("astronaut", np.asarray(astronaut))], scales=(2, 3, 4), patch_size=24)
    for scale in (2, 3, 4):
        for step in range(4):
            lr, hr = data.sample(batch_size=2, scale=scale, generator=step_generator(seed=0, rank=0, step=step))
            for i in range(2):
                hr_patch = (hr[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                remade = bicubic_downscale(hr_patch, scale).astype(int)
                lr_patch = (lr[i].permute(1, 2, 0).numpy() * 255).round().astype(int)
                # The kernel reaches 2 LR pixels, so compare the interior; flips that transpose change the
                # order of MATLAB's two rounded passes (off by a level or two), a misalignment by tens.
                diff = np.abs(remade[2:-2, 2:-2] - lr_patch[2:-2, 2:-2])
                assert diff.max() <= 3 and diff.mean() < 0.5


def test_the_eight_dihedral_augmentations_are_distinct(coffee):
    patch = np.asarray(crop(coffee, (16, 16), (300, 150)))
    variants = {dihedral(patch, k).tobytes() for k in range(8)}
    assert len(variants) == 8


def test_ranks_and_steps_draw_different_patches(astronaut):
    data = PatchDataset.from_arrays([("a", np.asarray(astronaut))], scales=(2,), patch_size=16)

    def draw(rank: int, step: int) -> torch.Tensor:
        return data.sample(batch_size=4, scale=2, generator=step_generator(seed=0, rank=rank, step=step))[0]

    assert torch.equal(draw(0, 5), draw(0, 5))
    assert not torch.equal(draw(0, 5), draw(1, 5))
    assert not torch.equal(draw(0, 5), draw(0, 6))


def test_unreadable_and_too_small_images_are_skipped_with_a_warning(image_folder):
    (image_folder / "broken.png").write_bytes(b"not a png")
    from PIL import Image

    Image.new("RGB", (20, 20)).save(image_folder / "tiny.png")
    with pytest.warns(UserWarning) as warned:
        data = PatchDataset.from_folders([image_folder], scales=(2, 4), patch_size=24)
    messages = " ".join(str(w.message) for w in warned)
    assert "broken.png" in messages and "tiny.png" in messages
    assert len(data) == 3


def test_lr_images_are_cached_by_content(tmp_path, astronaut):
    cache = tmp_path / "cache"
    PatchDataset.from_arrays([("a", np.asarray(astronaut))], scales=(2, 3), patch_size=16, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=(str(data),),
        out=str(out),
        preset="tiny",
        scales=(2, 3),
        patch_size=16,
        batch_size=4,
        steps=60,
        lr=1e-3,
        checkpoint_every=10,
        log_every=5,
        precision="fp32",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_a_tiny_run_lowers_the_loss_and_writes_loadable_weights(image_folder, tmp_path):
    final = train(tiny_config(image_folder, tmp_path / "run", steps=120), show_progress=False)
    values = losses(tmp_path / "run")
    assert np.mean(values[-4:]) < 0.7 * np.mean(values[:2])
    model = load_model(final)
    assert model.scales == (2, 3)
    meta = model.metadata
    assert json.loads(meta["steps"]) == 120 and json.loads(meta["images"]) == 3
    assert (tmp_path / "run" / "curve.png").stat().st_size > 0


def test_validation_keeps_a_best_checkpoint(image_folder, tmp_path):
    bench = tmp_path / "bench" / "HR"
    bench.mkdir(parents=True)
    for name in ("astronaut", "coffee"):
        (image_folder / f"{name}.png").rename(bench / f"{name}.png")
    train(
        tiny_config(image_folder, tmp_path / "run", steps=20, val_data=str(bench.parent), val_every=10),
        show_progress=False,
    )
    records = [json.loads(r) for r in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val" in r] == [10, 20]
    assert (tmp_path / "run" / "best.pt").exists()


def test_a_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(image_folder, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(image_folder, run, steps=10), show_progress=False)
    before = (run / "last.pt").read_bytes()
    monkeypatch.setattr("mdsr.train.functional.l1_loss", lambda a, b: (a - b).abs().mean() * float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 10"):
        train(tiny_config(image_folder, run, steps=20), resume=True, show_progress=False)
    assert (run / "last.pt").read_bytes() == before


def cli_train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mdsr",
        "train",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--scales",
        "2",
        "3",
        "--patch-size",
        "16",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--precision",
        "fp32",
        "--val-data",
        "none",
        "--threads",
        "1",
        "--log-every",
        "5",
        *extra,
    ]


def wait_for_log_past_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 900) -> None:  # a hang guard
    """Until log.jsonl holds a step after last.pt's: a kill then leaves records the resumed run logs again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            saved = torch.load(run / "last.pt", weights_only=True)["step"]
            logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()[:-1]]
            if logged and max(logged) > saved:
                return
        except (FileNotFoundError, EOFError, RuntimeError, ValueError):
            pass  # not written yet, or being replaced
        assert proc.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.05)
    raise TimeoutError


@pytest.mark.slow
def test_a_run_killed_with_sigkill_and_resumed_ends_with_the_weights_and_log_of_an_uninterrupted_one(
    image_folder, tmp_path
):
    steps = ["--steps", "150", "--checkpoint-every", "50"]
    subprocess.run(cli_train(image_folder, tmp_path / "straight", *steps), check=True, capture_output=True, timeout=1800)

    run = tmp_path / "killed"
    proc = subprocess.Popen(cli_train(image_folder, run, *steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_log_past_checkpoint(run, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(run / "last.pt", weights_only=True)["step"] < 150
    subprocess.run(cli_train(image_folder, run, *steps, "--resume"), check=True, capture_output=True, timeout=1800)

    a, b = load_model(tmp_path / "straight" / "weights.safetensors"), load_model(run / "weights.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    def logged_steps(folder: Path) -> list[int]:
        return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]

    assert logged_steps(run) == logged_steps(tmp_path / "straight")  # steps past the checkpoint logged once
    assert not list(run.glob(".*.tmp*"))  # no checkpoint the kill cut short is left behind


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_with_the_signals_status(image_folder, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        cli_train(image_folder, run, "--steps", "100000", "--checkpoint-every", "1000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "log.jsonl").exists() or not losses(run):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=900) == 128 + signal.SIGTERM  # a hang guard
    saved = torch.load(run / "last.pt", weights_only=True)["step"]
    assert 0 < saved < 100000 and (run / "weights.safetensors").exists()


@pytest.mark.slow
def test_torchrun_with_two_processes_keeps_both_ranks_identical(image_folder, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mdsr",
        *cli_train(image_folder, run, "--steps", "8")[3:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)  # a hang guard
    assert done.returncode == 0, done.stderr[-2000:]
    record = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines()][-1]
    assert record["ranks"] == 2
    assert len(set(record["weights_sha256"])) == 1
    meta = load_model(run / "weights.safetensors").metadata
    assert json.loads(meta["batch_size"]) == 8  # 4 per rank


def test_five_crop_replaces_each_image_by_its_corners_and_centre(astronaut):
    data = PatchDataset.from_arrays([("a", np.asarray(astronaut))], scales=(2,), patch_size=16, five_crop=True)
    assert len(data) == 5 and all(hr.shape == (256, 256, 3) for hr in data.hr)
    assert np.array_equal(data.hr[4], np.asarray(astronaut)[128:384, 128:384])


def test_a_hugging_face_dataset_in_super_image_layout_is_read_from_its_hr_column(astronaut, coffee):
    rows = [{"hr": crop(astronaut, (100, 80)), "lr": None}, {"hr": crop(coffee, (90, 96)), "lr": None}]
    try:
        import datasets

        rows = datasets.Dataset.from_list(
            [{"hr": r["hr"]} for r in rows], features=datasets.Features({"hr": datasets.Image()})
        )
    except ImportError:
        pass  # any sequence of rows with an "hr" image column is accepted
    data = PatchDataset.from_hf_dataset(rows, scales=(2, 4), patch_size=16)
    assert len(data) == 2 and data.hr[0].shape == (80, 100, 3) and data.lr[4][1].shape == (24, 22, 3)


def test_a_checkpoint_exports_to_a_weights_file_with_its_provenance(image_folder, tmp_path):
    from mdsr.cli import main

    train(tiny_config(image_folder, tmp_path / "run", steps=10), show_progress=False)
    out = tmp_path / "exported.safetensors"
    assert main(["export", str(tmp_path / "run" / "last.pt"), str(out), "--fp16", "--note", "resumed once"]) == 0
    model = load_model(out)
    assert model.metadata["note"] == "resumed once" and json.loads(model.metadata["steps"]) == 10


def test_training_auto_is_bf16_where_the_cpu_has_it_natively(monkeypatch):
    monkeypatch.setattr("mdsr.inference.host_cpu", lambda: CpuKind(int8=True, bf16=True))
    assert training_precision("auto", torch.device("cpu")) == "bf16"


def test_training_auto_is_fp32_where_bf16_would_be_emulated(monkeypatch):
    monkeypatch.setattr("mdsr.inference.host_cpu", lambda: CpuKind(int8=True, bf16=False))
    assert training_precision("auto", torch.device("cpu")) == "fp32"


def test_init_from_weights_of_another_width_is_an_error_naming_the_tensors(tmp_path):
    from mdsr.model import MDSR, MdsrConfig
    from mdsr.train import init_from

    with pytest.raises(ValueError, match=r"does not fit this architecture: \d+ tensors differ in shape \(e\.g\. "):
        init_from(
            MDSR(MdsrConfig(n_resblocks=2, n_feats=16, reduction=4)),
            MDSR(MdsrConfig(n_resblocks=2, n_feats=32, reduction=4)),
            source="w",
        )


def test_init_from_fewer_scales_keeps_the_shared_weights_and_the_new_scale_fresh():
    from mdsr.model import MDSR, MdsrConfig
    from mdsr.train import init_from

    torch.manual_seed(0)
    start = MDSR(MdsrConfig(n_resblocks=2, n_feats=16, reduction=4, scales=(2,)))
    model = MDSR(MdsrConfig(n_resblocks=2, n_feats=16, reduction=4, scales=(2, 4)))
    fresh = model.upsample["4"][0][0].weight.clone()
    init_from(model, start, source="w")
    assert torch.equal(model.body[0].body[0][0].weight, start.body[0].body[0][0].weight)
    assert torch.equal(model.upsample["2"][0][0].weight, start.upsample["2"][0][0].weight)
    assert torch.equal(model.upsample["4"][0][0].weight, fresh)


def test_weights_that_turn_non_finite_are_never_checkpointed(image_folder, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(image_folder, run, steps=10), show_progress=False)
    before = (run / "last.pt").read_bytes()

    def diverge(self, closure=None):  # an update whose loss was finite, and whose weights are not
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("inf"))

    monkeypatch.setattr(torch.optim.Adam, "step", diverge)
    with pytest.raises(NonFiniteLossError, match="weights became non-finite at step 11"):
        train(tiny_config(image_folder, run, steps=20, checkpoint_every=1), resume=True, show_progress=False)
    assert (run / "last.pt").read_bytes() == before


def test_a_symlinked_folder_of_images_is_training_data_and_a_link_loop_ends(image_folder, tmp_path):
    from mdsr.data import list_images

    data = tmp_path / "data"
    data.mkdir()
    (data / "photos").symlink_to(image_folder, target_is_directory=True)  # a dataset linked in
    (image_folder / "again").symlink_to(data, target_is_directory=True)  # a link back up: a loop
    assert sorted(p.name for p in list_images([data])) == ["astronaut.png", "chelsea.png", "coffee.png"]
