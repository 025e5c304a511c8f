"""Files written atomically, and output names distinct by construction."""

from __future__ import annotations

import os
import stat

import pytest

from mdsr import files
from mdsr.files import atomic_path, output_names


def test_inputs_with_distinct_names_keep_them():
    assert output_names(["in/cup.png", "in/cat.jpg"], "x2", ".png") == ["cup_x2.png", "cat_x2.png"]


def test_inputs_that_differ_only_in_format_keep_it():
    assert output_names(["rgb.bmp", "rgb.tiff"], "x2", ".png") == ["rgb_bmp_x2.png", "rgb_tiff_x2.png"]


def test_a_name_another_input_already_took_gets_its_folder_then_a_number():
    assert output_names(["a/rgb.bmp", "a/rgb.tiff", "a/rgb_bmp.png"], "x2", ".png") == [
        "rgb_bmp_x2.png",
        "rgb_tiff_x2.png",
        "a_rgb_bmp_x2.png",
    ]
    names = output_names(["x/a.png", "y/a.png", "y/a.png"], "x2", ".png")
    assert names == ["a_png_x2.png", "y_a_png_x2.png", "a_png_2_x2.png"]


def test_a_member_at_the_top_of_a_zip_takes_the_archives_name_without_its_suffix():
    assert output_names(["b.png", "photos.zip/b.png"], "x2", ".png") == ["b_png_x2.png", "photos_b_png_x2.png"]


def test_names_differing_only_in_case_are_distinct_on_every_file_system():
    assert output_names(["Cup.png", "cup.png"], "x2", ".png") == ["Cup_png_x2.png", "cup_png_2_x2.png"]


def test_an_atomic_write_that_fails_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_an_atomic_write_replaces_the_file_when_complete(tmp_path):
    target = tmp_path / "out.png"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


@pytest.fixture
def umask():
    """Set the process's umask for one test, restored after it."""
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_an_atomic_write_has_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mask, mode):
    umask(mask)
    with atomic_path(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"new")
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == mode


def test_the_umask_is_read_the_same_where_proc_does_not_report_it(tmp_path, umask, monkeypatch):
    umask(0o027)
    monkeypatch.setattr(files, "PROC_STATUS", str(tmp_path / "no_such_file"))
    with atomic_path(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"new")
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o640 and os.umask(0o027) == 0o027
