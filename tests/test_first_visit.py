"""The demo as a first-time visitor meets it, in a real Chromium: nothing empty on the page, the result
above the fold on a laptop and on a phone, no sideways scrolling. Screenshots go to artifacts/."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, limited, running_app
from test_browser import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]
ARTIFACTS = ROOT / "artifacts"
EXAMPLES = ROOT / "examples"
LAPTOP, PHONE = (1366, 768), (390, 844)
RESULT_PANELS = ("#slider", "#zoom", "#navigator", "#errors", "#region")

# Each result panel: whether it is shown, and whether it holds a picture; the run line's and the slider's tops
# in the viewport; the page's width against the window's.
GEOMETRY = """() => {
  const panel = s => { const e = document.querySelector(s); if (!e) return null;
    const shown = e.offsetParent !== null && e.getBoundingClientRect().height > 0;
    return {shown, pictures: e.querySelectorAll('img').length}; };
  const top = s => { const e = document.querySelector(s); return e ? e.getBoundingClientRect().top : null; };
  return {panels: Object.fromEntries(PANELS.map(s => [s, panel(s)])), info: top('#run-info'), slider: top('#slider'),
          page_width: document.documentElement.scrollWidth, window_width: window.innerWidth};
}""".replace("PANELS", json.dumps(RESULT_PANELS))


@pytest.fixture(scope="module")
def url():
    with running_app() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
        )  # fmt: skip
        yield browser
        browser.close()


def visit(browser, url, viewport):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(url)
    page.locator("#upscale-button").wait_for()
    return page


def run(page, image, scale: int, truth=None):
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    page.locator("#scale label", has_text=str(scale)).click()
    if truth is not None:
        page.get_by_text("Ground truth (for PSNR / SSIM)").click()
        page.locator("#gt-mode label", has_text="upload the original").click()
        page.locator("#gt-image input[type=file]").set_input_files(str(truth))
    page.locator("#upscale-button").click()
    page.locator("#run-info", has_text="Ran:").wait_for(timeout=300_000)
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#slider img')];"
        " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        timeout=60_000,
    )
    page.evaluate(SCROLL_SETTLED)


# The page scrolls to the result when it arrives: resolved once the scroll position has not moved for ten
# frames in a row, however slowly the browser runs.
SCROLL_SETTLED = """() => new Promise(resolve => {
  let last = null, still = 0;
  const tick = () => { still = window.scrollY === last ? still + 1 : 0; last = window.scrollY;
                       still >= 10 ? resolve() : requestAnimationFrame(tick); };
  tick();
})"""


def snapshot(page, name: str) -> dict:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"first-visit-{name}.png"))
    return page.evaluate(GEOMETRY)


def shown(geometry: dict, panel: str) -> bool:
    """Whether the panel is on the page (a hidden Gradio component is not in the document at all)."""
    found = geometry["panels"][panel]
    return bool(found and found["shown"])


def assert_no_empty_panel(geometry: dict) -> None:
    empty = [s for s, p in geometry["panels"].items() if p and p["shown"] and p["pictures"] == 0]
    assert not empty, geometry


def test_the_empty_page_shows_no_empty_picture_box(browser, url):
    geometry = snapshot(visit(browser, url, LAPTOP), "empty")
    assert_no_empty_panel(geometry)
    assert not any(shown(geometry, p) for p in RESULT_PANELS), geometry  # the welcome text alone


def test_a_4x_run_without_ground_truth_is_above_the_fold_on_a_laptop(browser, url):
    page = visit(browser, url, LAPTOP)
    run(page, EXAMPLES / "astronaut_lr_x4.png", 4)
    geometry = snapshot(page, "laptop-4x")
    assert_no_empty_panel(geometry)
    assert not shown(geometry, "#errors") and not shown(geometry, "#region"), geometry
    assert 0 <= geometry["info"] < LAPTOP[1] and 0 <= geometry["slider"] < LAPTOP[1], geometry
    assert page.locator("#metrics").is_hidden()


def test_a_run_with_a_ground_truth_shows_its_scores_and_error_maps(browser, url):
    page = visit(browser, url, LAPTOP)
    run(page, EXAMPLES / "coffee_lr_x3.png", 3, truth=EXAMPLES / "coffee.png")
    page.locator("#metrics", has_text="Gain").wait_for()
    geometry = snapshot(page, "laptop-truth")
    assert_no_empty_panel(geometry)
    assert shown(geometry, "#errors") and 0 <= geometry["slider"] < LAPTOP[1], geometry


def test_a_region_of_a_4000x3000_photo_is_shown_on_the_whole(browser, url, tmp_path, monkeypatch, astronaut):
    limited(monkeypatch, input_pixels=40_000)  # a quick region, of a photo that is over the limits all the same
    astronaut.resize((4000, 3000)).save(tmp_path / "photo.jpg", quality=90)
    page = visit(browser, url, LAPTOP)
    run(page, tmp_path / "photo.jpg", 2)
    page.locator("#run-info", has_text="region:").wait_for()
    geometry = snapshot(page, "laptop-region")
    assert_no_empty_panel(geometry)
    assert shown(geometry, "#region") and 0 <= geometry["slider"] < LAPTOP[1], geometry


def test_on_a_phone_the_result_is_above_the_fold_and_nothing_scrolls_sideways(browser, url):
    page = visit(browser, url, PHONE)
    assert snapshot(page, "phone-empty")["page_width"] <= PHONE[0]
    run(page, EXAMPLES / "coffee_lr_x3.png", 3)
    geometry = snapshot(page, "phone-3x")
    assert_no_empty_panel(geometry)
    assert 0 <= geometry["info"] < PHONE[1] and 0 <= geometry["slider"] < PHONE[1], geometry
    assert geometry["page_width"] <= geometry["window_width"] == PHONE[0], geometry


def test_a_click_on_the_map_of_the_output_moves_the_zoom_there(browser, url):
    page = visit(browser, url, LAPTOP)
    run(page, EXAMPLES / "chelsea_lr_x2.png", 2)
    before = page.locator("#zoom img").get_attribute("src")
    box = page.locator("#navigator img").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.2)
    page.wait_for_function("src => document.querySelector('#zoom img')?.src !== src", arg=before, timeout=60_000)
    assert not page.locator("#auto-zoom input").is_checked()


def test_the_app_starts_without_a_warning(tmp_path):
    import os
    import subprocess
    import sys

    folders = {"GRADIO_TEMP_DIR": str(tmp_path), "GRADIO_EXAMPLES_CACHE": str(tmp_path / "examples")}
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", "import app"], capture_output=True, text=True, cwd=ROOT,
        timeout=1200, env={**os.environ, **folders},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
