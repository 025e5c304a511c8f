"""What `mdsr upscale` and `mdsr downscale` write: never over one of the run's inputs, an existing output
kept unless --overwrite, a distinct output for each input."""

from __future__ import annotations

import pytest
from conftest import crop
from PIL import Image

from mdsr.cli import main


def two_photos(folder, first: tuple[Image.Image, str], second: tuple[Image.Image, str]):
    """``folder`` made, holding the two (photo, name) given."""
    folder.mkdir()
    for photo, name in (first, second):
        photo.save(folder / name)
    return folder


@pytest.fixture
def photos(tmp_path, coffee, chelsea):
    """A folder holding a.png and a second photo, a_x2.png, named as a.png's upscaled output."""
    return two_photos(tmp_path / "photos", (crop(coffee, (24, 20)), "a.png"), (crop(chelsea, (20, 16)), "a_x2.png"))


def upscale(folder, out, weights, *options) -> int:
    return main(["upscale", str(folder), "-s", "2", "-o", str(out), "--weights", weights, *options])


def test_overwrite_never_replaces_an_input_named_like_another_inputs_output(photos, tiny_weights, capsys):
    before = (photos / "a_x2.png").read_bytes()
    assert upscale(photos, photos, tiny_weights, "--overwrite") == 1
    assert (photos / "a_x2.png").read_bytes() == before
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"error: {photos / 'a.png'}: its output {photos / 'a_x2.png'} is an input of this run, never replaced; "
        "write to another folder (-o)"
    )


def test_the_other_inputs_are_still_upscaled_when_one_output_would_replace_an_input(photos, tiny_weights):
    upscale(photos, photos, tiny_weights, "--overwrite")
    assert Image.open(photos / "a_x2_x2.png").size == (40, 32)


def test_without_overwrite_an_output_that_is_an_input_is_kept_and_says_why(photos, tiny_weights, capsys):
    before = (photos / "a_x2.png").read_bytes()
    assert upscale(photos, photos, tiny_weights) == 0
    assert (photos / "a_x2.png").read_bytes() == before
    assert f"{photos / 'a.png'}: kept {photos / 'a_x2.png'} (an input of this run, never replaced)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize("spelling", ["symlink", "dot-dot"])
def test_an_input_is_recognised_however_the_output_folder_is_spelled(photos, tiny_weights, spelling):
    if spelling == "symlink":
        out = photos.parent / "link"
        out.symlink_to(photos, target_is_directory=True)
    else:
        out = photos / ".." / photos.name
    before = (photos / "a_x2.png").read_bytes()
    assert upscale(photos, out, tiny_weights, "--overwrite") == 1
    assert (photos / "a_x2.png").read_bytes() == before


def test_a_compare_picture_never_replaces_an_input(tmp_path, coffee, chelsea, tiny_weights):
    folder = two_photos(
        tmp_path / "photos", (crop(coffee, (24, 20)), "a.png"), (crop(chelsea, (20, 16)), "a_x2_compare.png")
    )
    before = (folder / "a_x2_compare.png").read_bytes()
    assert upscale(folder, folder, tiny_weights, "--compare") == 1
    assert (folder / "a_x2_compare.png").read_bytes() == before


def downscale(inputs, out, *options) -> int:
    return main(["downscale", str(inputs), "-s", "2", "-o", str(out), *options])


@pytest.fixture
def hr_photos(tmp_path, coffee, chelsea):
    """A folder holding a.png and a second photo, ax2.png, named as a.png's downscaled output."""
    return two_photos(tmp_path / "hr", (crop(coffee, (40, 32)), "a.png"), (crop(chelsea, (24, 20)), "ax2.png"))


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["kept", "overwrite"])
def test_downscale_never_writes_over_an_input(hr_photos, overwrite):
    before = (hr_photos / "ax2.png").read_bytes()
    downscale(hr_photos, hr_photos, *overwrite)
    assert (hr_photos / "ax2.png").read_bytes() == before
    assert Image.open(hr_photos / "ax2x2.png").size == (12, 10)  # the second photo, downscaled once


def test_downscale_refuses_with_overwrite_an_output_that_is_an_input(hr_photos, capsys):
    assert downscale(hr_photos, hr_photos, "--overwrite") == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"error: {hr_photos / 'a.png'}: its output {hr_photos / 'ax2.png'} is an input of this run, never replaced; "
        "write to another folder (-o)"
    )


def test_downscale_keeps_an_existing_output_unless_overwrite_is_given(tmp_path, hr_photos, capsys):
    out = tmp_path / "lr"
    out.mkdir()
    (out / "ax2.png").write_bytes(b"mine")
    assert downscale(hr_photos / "a.png", out) == 0
    assert (out / "ax2.png").read_bytes() == b"mine"
    assert f"kept {out / 'ax2.png'} (exists; --overwrite replaces it)" in capsys.readouterr().out
    assert downscale(hr_photos / "a.png", out, "--overwrite") == 0
    assert Image.open(out / "ax2.png").size == (20, 16)


def test_downscale_gives_inputs_that_share_a_name_distinct_outputs(tmp_path, coffee, chelsea):
    folder = tmp_path / "hr"
    folder.mkdir()
    crop(coffee, (40, 32)).save(folder / "a.png")
    crop(chelsea, (24, 20)).save(folder / "a.jpg", quality=95)
    assert downscale(folder, tmp_path / "lr") == 0
    made = {p.name: Image.open(p).size for p in (tmp_path / "lr").iterdir()}
    assert made == {"a_pngx2.png": (20, 16), "a_jpgx2.png": (12, 10)}
