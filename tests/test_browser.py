"""The demo in a real Chromium, driven by Playwright: upload, pick 3x, upscale, read the results."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, running_app
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]
ARTIFACTS = ROOT / "artifacts"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def url():
    with running_app() as url:
        yield url


@pytest.fixture(scope="module")
def page(url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
        page.goto(url)
        yield page
        browser.close()


def loaded_slider(page):
    """The slider's two pictures, once the browser has loaded both (the text beside them may arrive first)."""
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#slider img')];"
        " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        timeout=60_000,
    )
    return page.locator("#slider img")


def test_upload_upscale_3x_and_download(page, tmp_path):
    lr = EXAMPLES / "coffee_lr_x3.png"
    width, height = Image.open(lr).size
    page.locator("#input-image input[type=file]").set_input_files(str(lr))
    page.locator("#scale label", has_text="3").click()
    page.get_by_text("Ground truth (for PSNR / SSIM)").click()
    page.locator("#gt-mode label", has_text="upload the original").click()
    page.locator("#gt-image input[type=file]").set_input_files(str(EXAMPLES / "coffee.png"))
    page.locator("#upscale-button").click()

    page.locator("#metrics", has_text="Gain").wait_for(timeout=180_000)
    natural = loaded_slider(page).last.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [width * 3, height * 3]

    with page.expect_download() as download_info:
        page.locator("#download").click()
    saved = tmp_path / "download.png"
    download_info.value.save_as(saved)
    assert Image.open(saved).size == (width * 3, height * 3)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-3x.png"), full_page=True)
    assert Path(ARTIFACTS / "browser-3x.png").stat().st_size > 10_000


def test_an_example_fills_the_results_and_is_cached(page, url):
    page.goto(url)
    page.locator(".gallery-item, tr.tr-body, [data-testid='example']").first.click()
    page.locator("#metrics", has_text="Gain").wait_for(timeout=180_000)
    assert loaded_slider(page).last.evaluate("img => img.naturalWidth") == 512  # astronaut, 128 px LR at 4x
    # The row's ground-truth choice is "upload the original": the original is filled in too, so that Upscale
    # after the click runs what the row shows rather than asking for a file.
    page.get_by_text("Ground truth (for PSNR / SSIM)").click()
    page.locator("#gt-image img").first.wait_for(timeout=60_000)


def test_your_own_weights_upscale_and_are_named(page, url, tmp_path):
    from conftest import tiny

    from mdsr.weights import save_weights

    weights = save_weights(tiny(), tmp_path / "my-run.safetensors", metadata={"note": "my fine-tune", "steps": 120})
    page.goto(url)
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea_lr_x2.png"))
    page.locator("#scale label", has_text="2").click()
    page.get_by_text("Options").click()
    page.locator("#weights label", has_text="my weights").click()
    page.locator("#my-weights input[type=file]").set_input_files(str(weights))
    page.locator("#my-weights", has_text="my-run").wait_for(timeout=60_000)  # name and suffix apart
    page.locator("#upscale-button").click()
    page.locator("#run-info", has_text="my-run.safetensors weights — my fine-tune; 120 steps").wait_for(timeout=180_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-custom-weights.png"), full_page=True)


def test_ab_mode_compares_your_weights_with_the_bundled_ones(page, url, tmp_path):
    from conftest import tiny

    from mdsr.weights import save_weights

    weights = save_weights(tiny(), tmp_path / "candidate.safetensors", metadata={"note": "candidate"})
    page.goto(url)
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea_lr_x2.png"))
    page.locator("#scale label", has_text="2").click()
    page.get_by_text("Ground truth (for PSNR / SSIM)").click()
    page.locator("#gt-mode label", has_text="upload the original").click()
    page.locator("#gt-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
    page.get_by_text("Options").click()
    page.locator("#weights label", has_text="my weights").click()
    page.locator("#my-weights input[type=file]").set_input_files(str(weights))
    page.locator("#my-weights", has_text="candidate").wait_for(timeout=60_000)  # name and suffix apart
    page.locator("#versus label", has_text="bundled (offline)").click()
    page.locator("#upscale-button").click()
    page.locator("#metrics", has_text="A − B").wait_for(timeout=180_000)
    assert page.locator("#metrics", has_text="B: mdsr-bam-x234.safetensors").count() == 1
    assert loaded_slider(page).count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-ab.png"), full_page=True)


def test_batch_upscales_several_images_into_one_zip(page, url, tmp_path):
    page.goto(url)
    page.get_by_text("Batch: several images, or zips of them").click()
    files = [str(EXAMPLES / "chelsea_lr_x2.png"), str(EXAMPLES / "coffee_lr_x3.png")]
    page.locator("#batch-files input[type=file]").set_input_files(files)
    page.locator("#batch-files", has_text="coffee_lr_x3").wait_for(timeout=60_000)  # name and suffix apart
    truth = tmp_path / "truths" / "chelsea_lr_x2.png"  # the ground truth is matched by name
    truth.parent.mkdir()
    truth.write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    page.locator("#batch-truths input[type=file]").set_input_files(str(truth))
    page.locator("#batch-truths", has_text="chelsea_lr_x2").wait_for(timeout=60_000)
    page.locator("#batch-button").click()
    page.locator("#batch-zip", has_text="mdsr_batch_x2").wait_for(timeout=240_000)
    table = page.locator("#batch-table").inner_text()
    assert "450x300" in table and "400x266" in table
    assert page.locator("#batch-table td", has_text="36.").count() >= 1  # chelsea's PSNR against its truth
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-batch.png"), full_page=True)


def test_another_size_is_upscaled_and_named(page, url):
    page.goto(url)
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "coffee_lr_x3.png"))
    page.locator("#custom-size textarea, #custom-size input").first.fill("1.5")
    page.locator("#upscale-button").click()
    page.locator("#run-info", has_text="200x133 → 300x200").wait_for(timeout=180_000)
    assert loaded_slider(page).last.evaluate("img => img.naturalWidth") == 300
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-custom-size.png"), full_page=True)


def test_a_photo_over_the_limits_gives_a_region_shown_on_the_whole(page, url, tmp_path, monkeypatch, astronaut):
    from conftest import limited

    limited(monkeypatch, input_pixels=40_000)  # the astronaut's 512x512 is then a photo over the limits
    astronaut.save(tmp_path / "astronaut.jpg", quality=95)
    page.goto(url)
    page.locator("#input-image input[type=file]").set_input_files(str(tmp_path / "astronaut.jpg"))
    page.locator("#scale label", has_text="2").click()
    page.locator("#upscale-button").click()
    page.locator("#run-info", has_text="region:").wait_for(timeout=180_000)
    assert page.locator("#region img").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-region.png"), full_page=True)


def test_a_refused_run_leaves_the_last_result_on_show_and_usable(page, url):
    page.goto(url)
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea_lr_x2.png"))
    page.locator("#scale label", has_text="2").click()
    page.locator("#upscale-button").click()
    before = loaded_slider(page).last.evaluate("img => img.naturalWidth")

    page.get_by_text("Ground truth (for PSNR / SSIM)").click()
    page.locator("#gt-mode label", has_text="upload the original").click()  # and no file: refused
    page.locator("#upscale-button").click()
    page.get_by_text("upload the original (HR) image, or choose another ground-truth option").first.wait_for()

    assert loaded_slider(page).last.evaluate("img => img.naturalWidth") == before
    for panel in ("#slider", "#zoom", "#download"):  # no "Error" mark over the last result's panels
        assert page.locator(panel).get_by_text("Error", exact=True).count() == 0, panel
