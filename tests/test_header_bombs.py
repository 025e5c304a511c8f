"""Sizes are read from headers alone: a small file that declares a huge image is refused before a pixel
of it is decoded, whatever its format, as an input, a ground truth or one image of a batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from PIL import Image, ImageFile
from sample_files import declared_png, heic_declaring, write

from mdsr.cli import main
from mdsr.imaging import ImageError, image_size, read_image


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decode of pixels fails the test."""

    def load(self):
        raise AssertionError(f"{self.format} pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def orientation_6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def test_a_png_declaring_13000_squared_is_sized_without_decoding(tmp_path, no_decoding):
    bomb = declared_png(tmp_path / "bomb.png", (13000, 13000))
    assert bomb.stat().st_size < 1_000_000
    assert image_size(str(bomb)) == (13000, 13000)


def test_a_pngs_orientation_after_its_pixels_is_read_without_decoding(tmp_path, no_decoding):
    rotated = declared_png(tmp_path / "rotated.png", (90, 40), exif_after_pixels=orientation_6())
    assert image_size(str(rotated)) == (40, 90)


def test_that_orientation_is_the_one_decoding_applies(tmp_path):
    rotated = declared_png(tmp_path / "rotated.png", (90, 40), exif_after_pixels=orientation_6())
    assert read_image(str(rotated)).size == image_size(str(rotated)) == (40, 90)


@pytest.mark.parametrize(
    "name", ["exif_rotated_jpeg", "phone_jpeg", "heic_rotated", "avif_rotated", "animated_gif", "grey16_png"]
)
def test_every_format_is_sized_from_its_header(tmp_path, name):
    path = write(tmp_path, name)
    expected = read_image(str(path)).size
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", lambda self: (_ for _ in ()).throw(AssertionError("decoded")))
        assert image_size(str(path)) == expected


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "BMP"])
def test_webp_tiff_and_bmp_are_sized_from_their_header(tmp_path, fmt, no_decoding):
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (70, 30), (1, 2, 3)).save(path, format=fmt)
    assert image_size(str(path)) == (70, 30)


def test_a_heic_declaring_60000_squared_is_one_sentence_not_a_libheif_error(tmp_path):
    bomb = heic_declaring(tmp_path, (60000, 60000))
    with pytest.raises(ImageError) as refused:
        read_image(str(bomb))
    assert "RuntimeError" not in str(refused.value) and str(refused.value)


def test_a_folder_holding_a_heic_bomb_upscales_every_other_file(tmp_path, tiny_weights, coffee, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    heic_declaring(folder, (60000, 60000))
    coffee.crop((0, 0, 40, 30)).save(folder / "zz_after_it.png")  # sorted after the bomb
    assert main(["upscale", str(folder), "-s", "2", "-o", str(tmp_path / "out"), "--weights", tiny_weights]) == 1
    assert (tmp_path / "out" / "zz_after_it_x2.png").exists()
    err = capsys.readouterr().err
    assert "declares_60000x60000.heic: the image data could not be decoded" in err and "Traceback" not in err


def test_two_torchrun_processes_write_every_file_but_a_heic_bomb_and_report_it_without_a_traceback(
    tmp_path, tiny_weights, coffee
):
    folder = tmp_path / "in"
    folder.mkdir()
    coffee.crop((0, 0, 40, 30)).save(folder / "a_before_it.png")
    bomb = heic_declaring(tmp_path, (60000, 60000))  # beside the good HEIC it was made from
    bomb.rename(folder / bomb.name)
    coffee.crop((40, 0, 80, 30)).save(folder / "zz_after_it.png")
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "mdsr", "upscale", str(folder), "-s", "2", "-o",
         str(tmp_path / "out"), "--weights", tiny_weights, "--precision", "fp32"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]  # a failed file is reported, not a launcher's failure
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_before_it_x2.png", "zz_after_it_x2.png"]
    assert "3 images in 2 processes: 2 written, 0 kept, 1 failed" in done.stdout
    assert "declares_60000x60000.heic: the image data could not be decoded" in done.stderr
    assert "error: 1 of 3 images failed" in done.stderr
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr


CHILD = """
import json, sys
from sample_files import declared_png, heic_declaring
from mdsr.imaging import ImageError, read_image
from mdsr.serving import DEMO_LIMITS, Item, RefusedError, Request, admit
from mdsr.sizing import Target
from pathlib import Path
folder = Path(sys.argv[1])
png = str(declared_png(folder / "bomb.png", (13000, 13000)))
heic = str(heic_declaring(folder, (60000, 60000)))
small = str(declared_png(folder / "small.png", (64, 48)))
requests = [
    Request((Item("bomb.png", png),), Target(factor=2)),
    Request((Item("small.png", small, png),), Target(factor=2), truth="upload"),
    Request(tuple(Item(f"{n}.png", png) for n in range(16)), Target(factor=2), each=True),
]
def peak():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
before, refused = peak(), 0
for request in requests:
    try:
        admitted = admit(request, DEMO_LIMITS)
        refused += all(p.refusal for p in admitted.plans)
    except (RefusedError, ValueError):
        refused += 1
try:  # its header declares 48x64: admitted, and libheif refuses to decode it
    read_image(heic)
except ImageError:
    refused += 1
print(json.dumps({"rise_mb": peak() - before, "refused": refused}))
"""


def test_header_bombs_raise_a_fresh_processs_peak_memory_by_under_20_mb(tmp_path):
    """The PNG bomb as an input, as a ground truth and sixteen times in a batch is refused at admission,
    the HEIC bomb when it is decoded; and the process's peak resident memory barely moves (a decode of 13000^2 would add 169 MB)."""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.split("\n")[-2])
    assert figures["refused"] == 4
    assert figures["rise_mb"] < 20, figures
