"""Batch requests: images and zips in, a zip of PNGs and a table out; every member that cannot be used is an
error row while the others are upscaled; bounded before decoding."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import ROOT, limited
from PIL import Image
from sample_files import photo, write

from demo.batch import collect
from mdsr.imaging import bicubic_downscale
from mdsr.serving import RefusedError

EXAMPLES = ROOT / "examples"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path, members: dict[str, bytes], **options):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **options) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(path)


def run_batch(files, truths=None, scale=2):
    import app

    return app.batch_ui(files, scale, truths, app.BUNDLED, "fp32", progress=lambda *a, **k: None)


def rows_by_name(table):
    return {row[0]: row for row in table}


def test_files_and_zip_members_become_items_named_by_their_place(tmp_path):
    photo((40, 30)).save(tmp_path / "cup.png")
    archive = make_zip(tmp_path / "more.zip", {"a/cup.png": png_bytes(photo((20, 10)))})
    items = collect([str(tmp_path / "cup.png"), archive], max_images=8, max_unpacked_bytes=10**6)
    assert [item.name for item in items] == ["cup.png", "more.zip/a/cup.png"]


def test_a_zip_that_unpacks_past_the_limit_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"big.png": b"\0" * 5_000_000})  # ~5 kB compressed
    with pytest.raises(RefusedError, match="the zip files unpack to more than 1,000,000 bytes; that is the limit"):
        collect([archive], max_images=8, max_unpacked_bytes=1_000_000)


def test_too_many_images_are_refused_with_the_limit(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"{i}.png": png_bytes(photo((8, 8))) for i in range(5)})
    with pytest.raises(RefusedError, match="a batch holds at most 4 images; this one has 5"):
        collect([archive], max_images=4, max_unpacked_bytes=10**6)


def test_the_whole_batch_counts_towards_the_work_limit(tmp_path, monkeypatch):
    import app

    for i in range(3):
        photo((100, 100)).save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    limited(monkeypatch, work_pixels=120_000)
    run_batch(files)
    limited(monkeypatch, work_pixels=100_000)
    with pytest.raises(app.gr.Error, match=r"this batch is 120,000 output pixels; the limit per request is 100,000"):
        run_batch(files)


def test_a_batch_gives_a_zip_of_pngs_scores_ground_truths_and_reports_bad_files(tmp_path):
    hr = photo((96, 72))
    Image.fromarray(bicubic_downscale(np.asarray(hr), 2)).save(tmp_path / "cup.png")
    truths = tmp_path / "truths"
    truths.mkdir()
    hr.save(truths / "cup.png")
    write(tmp_path, "not_an_image")
    path, table = run_batch([str(tmp_path / "cup.png"), str(tmp_path / "notes.png")], [str(truths / "cup.png")])
    rows = rows_by_name(table)
    assert rows["cup.png"][1:4] == ["cup_x2.png", "48x36", "96x72"]
    assert rows["cup.png"][5] is not None and rows["cup.png"][8] == ""
    assert "not an image" in rows["notes.png"][8] and rows["notes.png"][1] == ""
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["cup_x2.png"]
        assert Image.open(io.BytesIO(z.read("cup_x2.png"))).size == (96, 72)


def test_inputs_sharing_a_name_give_distinct_outputs(tmp_path):
    photo((40, 30)).save(tmp_path / "b.png")
    photo((30, 20)).save(tmp_path / "b.jpg", quality=95)
    photo((20, 10)).save(tmp_path / "a_2.png")
    archive = make_zip(tmp_path / "more.zip", {"x/a.png": png_bytes(photo((24, 16))), "y/a.png": png_bytes(photo((16, 8)))})
    path, table = run_batch([str(tmp_path / "b.png"), str(tmp_path / "b.jpg"), str(tmp_path / "a_2.png"), archive])
    with zipfile.ZipFile(path) as z:
        sizes = {name: Image.open(io.BytesIO(z.read(name))).size for name in z.namelist()}
    assert len(sizes) == 5 and sorted(sizes.values()) == [(32, 16), (40, 20), (48, 32), (60, 40), (80, 60)]


def test_rows_of_files_sharing_a_name_name_their_place_and_their_distinct_output(tmp_path):
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    photo((40, 30)).save(tmp_path / "first" / "b.png")
    photo((30, 20)).save(tmp_path / "second" / "b.png")  # a second upload of the same name
    archive = make_zip(tmp_path / "archive.zip", {"sub/b.png": png_bytes(photo((24, 16)))})
    path, table = run_batch([str(tmp_path / "first" / "b.png"), archive, str(tmp_path / "second" / "b.png")])
    assert [row[:4] for row in table] == [
        ["b.png", "b_png_x2.png", "40x30", "80x60"],
        ["archive.zip/sub/b.png", "sub_b_png_x2.png", "24x16", "48x32"],
        ["b.png", "b_png_2_x2.png", "30x20", "60x40"],
    ]
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(row[1] for row in table)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("nested", "a zip inside the zip"),
        ("text", "not an image file"),
        ("damaged", "the file is damaged in the zip"),
        ("deflate64", "a compression this reader lacks"),
        ("encrypted", "the file is encrypted in the zip"),
    ],
)
def test_a_member_that_cannot_be_used_is_an_error_row_and_the_rest_are_upscaled(tmp_path, member, message):
    good = png_bytes(photo((24, 16)))
    archive = tmp_path / "mixed.zip"
    make_zip(archive, {"good.png": good, "bad.png" if member not in ("nested", "text") else "bad": good})
    data = bytearray(archive.read_bytes())
    header = data.index(b"PK\x03\x04", 4)  # the second member's local header
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # and its directory entry
    if member == "nested":
        make_zip(archive, {"good.png": good, "inner.zip": b"PK\x05\x06" + bytes(18)})
        data = bytearray(archive.read_bytes())
    elif member == "text":
        make_zip(archive, {"good.png": good, "readme.txt": b"hello"})
        data = bytearray(archive.read_bytes())
    elif member == "damaged":
        data[header + 30 + len("bad.png") + 20] ^= 0xFF  # a byte of its compressed data: the CRC fails
    elif member == "deflate64":
        data[header + 8 : header + 10] = (9).to_bytes(2, "little")
        data[central + 10 : central + 12] = (9).to_bytes(2, "little")
    elif member == "encrypted":
        data[header + 6] |= 1
        data[central + 8] |= 1
    archive.write_bytes(bytes(data))
    _, table = run_batch([str(archive)])
    rows = rows_by_name(table)
    assert rows["mixed.zip/good.png"][3] == "48x32" and rows["mixed.zip/good.png"][8] == ""
    bad = next(row for name, row in rows.items() if name != "mixed.zip/good.png")
    assert message in bad[8]


def test_a_damaged_zip_is_one_error_row_beside_the_other_files(tmp_path):
    photo((24, 16)).save(tmp_path / "ok.png")
    make_zip(tmp_path / "broken.zip", {"a.png": png_bytes(photo((24, 16)))})
    data = (tmp_path / "broken.zip").read_bytes()
    (tmp_path / "broken.zip").write_bytes(data[: len(data) // 2])  # cut off before its directory
    _, table = run_batch([str(tmp_path / "ok.png"), str(tmp_path / "broken.zip")])
    rows = rows_by_name(table)
    assert rows["ok.png"][8] == "" and "could not be read as a zip archive" in rows["broken.zip"][8]


def test_a_batch_where_no_image_could_be_upscaled_offers_the_table_and_no_empty_zip(tmp_path):
    (tmp_path / "notes.png").write_bytes(b"not an image")
    empty = make_zip(tmp_path / "empty.zip", {})
    archive, rows = run_batch([str(tmp_path / "notes.png"), empty])
    assert archive is None
    assert {row[0] for row in rows} == {"notes.png", "empty.zip"} and all(row[-1] for row in rows)
