"""Batch upscaling: images and zips in, a zip of PNGs and a table out; bounded before decoding."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import ROOT, tiny
from PIL import Image
from sample_files import photo, write

from mdsr.batch import check_batch_work, collect, upscale_batch
from mdsr.imaging import ImageError, bicubic_downscale

EXAMPLES = ROOT / "examples"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(path)


def test_files_and_zip_members_are_collected_with_unique_names(tmp_path):
    photo((40, 30)).save(tmp_path / "cup.png")
    archive = make_zip(tmp_path / "more.zip", {"a/cup.png": png_bytes(photo((20, 10))), "notes.txt": b"x"})
    items = collect([str(tmp_path / "cup.png"), archive], max_images=8, max_unpacked_bytes=10**6)
    assert [name for name, _ in items] == ["cup.png", "cup_2.png"]


def test_a_zip_that_unpacks_past_the_limit_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"big.png": b"\0" * 5_000_000})  # ~5 kB compressed
    with pytest.raises(ImageError, match="the zip unpacks to more than 1,000,000 bytes; that is the limit"):
        collect([archive], max_images=8, max_unpacked_bytes=1_000_000)


def test_too_many_images_are_refused_with_the_limit(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"{i}.png": png_bytes(photo((8, 8))) for i in range(5)})
    with pytest.raises(ImageError, match="a batch holds at most 4 images"):
        collect([archive], max_images=4, max_unpacked_bytes=10**6)


def test_the_whole_batch_counts_towards_the_work_limit(tmp_path):
    for i in range(3):
        photo((100, 100)).save(tmp_path / f"{i}.png")
    items = collect([str(tmp_path / f"{i}.png") for i in range(3)], max_images=8, max_unpacked_bytes=10**6)
    check_batch_work(items, 2, 120_000)
    with pytest.raises(
        ImageError, match=r"this batch is 120,000 output pixels at x2; the limit per request is 100,000"
    ):
        check_batch_work(items, 2, 100_000)


def test_a_batch_writes_a_zip_of_pngs_scores_ground_truths_and_reports_bad_files(tmp_path):
    hr = photo((96, 72))
    Image.fromarray(bicubic_downscale(np.asarray(hr), 2)).save(tmp_path / "cup.png")
    hr.save(tmp_path / "cup_truth.png")
    write(tmp_path, "not_an_image")
    items = collect([str(tmp_path / "cup.png"), str(tmp_path / "notes.png")], max_images=8, max_unpacked_bytes=10**6)
    rows, archive = upscale_batch(
        tiny(), items, 2, tmp_path / "out", truths={"cup": str(tmp_path / "cup_truth.png")},
        precision="fp32", max_input_pixels=10**6,
    )  # fmt: skip
    assert [(r.name, r.size_in, r.size_out) for r in rows] == [("cup.png", "48x36", "96x72"), ("notes.png", "", "")]
    assert rows[0].psnr is not None and rows[0].bicubic_psnr is not None and rows[0].error == ""
    assert "not an image" in rows[1].error
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == ["cup_x2.png"]
        assert Image.open(io.BytesIO(z.read("cup_x2.png"))).size == (96, 72)


def test_the_demo_batch_returns_the_zip_and_the_table(tmp_path):
    import app

    photo((40, 30)).save(tmp_path / "one.png")
    archive = make_zip(tmp_path / "two.zip", {"two.png": png_bytes(photo((30, 20)))})
    path, table = app.batch_ui(
        [str(tmp_path / "one.png"), archive], 2, None, app.BUNDLED, "fp32", progress=lambda *a, **k: None
    )
    assert [row[:3] for row in table] == [["one.png", "40x30", "80x60"], ["two.png", "30x20", "60x40"]]
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["one_x2.png", "two_x2.png"]
