"""`mdsr evaluate`: both protocols, the card's table, JSON records."""

from __future__ import annotations

import json

import pytest
from conftest import BENCHMARK, needs_data, tiny

from mdsr.cli import main
from mdsr.evaluate import evaluate, markdown_table


@pytest.fixture
def bench(tmp_path, astronaut, coffee):
    folder = tmp_path / "Mini" / "HR"
    folder.mkdir(parents=True)
    astronaut.crop((100, 100, 197, 190)).save(folder / "astronaut.png")  # 97x90: not divisible by 2, 3 or 4
    coffee.crop((200, 100, 296, 196)).save(folder / "coffee.png")
    return folder.parent


def test_standard_and_super_image_protocols_both_report_every_image(bench):
    model = tiny()
    for protocol in ("standard", "super-image"):
        (result,) = evaluate(model, [bench], [3], protocol=protocol, show_progress=False)
        assert (result.dataset, result.scale, result.images, result.protocol) == ("Mini", 3, 2, protocol)
        assert [r["name"] for r in result.per_image] == ["astronaut", "coffee"]


def test_the_two_protocols_give_different_bicubic_figures(bench):
    model = tiny()
    (standard,) = evaluate(model, [bench], [2], protocol="standard", show_progress=False)
    (card,) = evaluate(model, [bench], [2], protocol="super-image", show_progress=False)
    assert abs(standard.bicubic_psnr - card.bicubic_psnr) > 0.01


def test_the_table_has_the_model_cards_columns(bench):
    results = evaluate(tiny(), [bench], [2, 4], show_progress=False)
    table = markdown_table(results).splitlines()
    assert table[0] == "| Dataset | Scale | Bicubic PSNR / SSIM | MDSR-BAM PSNR / SSIM |"
    assert table[2].startswith("| Mini | x2 | ") and table[3].startswith("| Mini | x4 | ")


def test_the_cli_prints_the_table_and_writes_json_records(bench, tmp_path, tiny_weights, capsys):  # noqa: F811
    out = tmp_path / "results.json"
    assert (
        main(["evaluate", "--data", str(bench), "--scales", "2", "3", "--weights", tiny_weights, "--json", str(out)])
        == 0
    )
    assert "| Mini | x3 |" in capsys.readouterr().out
    records = json.loads(out.read_text())
    assert {k for k in records[0]} >= {
        "dataset",
        "scale",
        "images",
        "psnr",
        "ssim",
        "bicubic_psnr",
        "bicubic_ssim",
        "weights",
        "protocol",
        "per_image",
    }


@needs_data
def test_set5_with_a_tiny_model(tmp_path, tiny_weights, capsys):  # noqa: F811
    assert main(["evaluate", "--data", str(BENCHMARK / "Set5"), "--scales", "2", "--weights", tiny_weights]) == 0
    assert "| Set5 | x2 | 33.6" in capsys.readouterr().out


def result(dataset: str, scale: int, psnrs: list[float]):
    from mdsr.evaluate import Result

    rows = [{"name": f"img{i}", "psnr": p} for i, p in enumerate(psnrs)]
    return Result(dataset, scale, len(rows), 0.0, 0.0, 0.0, 0.0, "", "standard", rows)


def test_the_bar_holds_within_a_hundredth_of_a_db_on_average_and_a_tenth_on_any_image():
    from mdsr.evaluate import bar_checks

    reference = [result("Set5", 2, [30.0, 31.0, 32.0]), result("photos", 2, [30.0, 31.0])]
    close = [result("Set5", 2, [30.05, 30.95, 32.02]), result("photos", 2, [30.09, 31.0])]
    checks = bar_checks(reference, close)
    assert [c.holds for c in checks] == [True, True]
    assert checks[0].mean_change == pytest.approx(0.02 / 3) and checks[0].worst_image == "img0"


def test_the_bar_is_missed_by_a_mean_shift_or_by_one_image():
    from mdsr.evaluate import bar_checks

    reference = [result("BSD100", 3, [30.0, 31.0]), result("photos", 3, [30.0])]
    shifted = [result("BSD100", 3, [30.02, 31.02]), result("photos", 3, [30.2])]
    assert [c.holds for c in bar_checks(reference, shifted)] == [False, False]
    # a set outside the three test sets is held to the per-image bound only
    assert bar_checks([result("photos", 2, [30.0, 31.0])], [result("photos", 2, [30.05, 31.05])])[0].holds
