"""One real browser test: streamlit run on loopback, Debian's chromium driven by Playwright."""
import os
import shutil
import sys

import pytest

from tests.conftest import DATA_DIR, needs_data
from tests.serving import CHROMIUM, CHROMIUM_ARGS, running_app

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian chromium not installed at {CHROMIUM}"),
    pytest.mark.skipif(shutil.which("streamlit", path=os.path.dirname(sys.executable)) is None, reason="streamlit not installed"),
]


@pytest.fixture(scope="module")
def app_url():
    with running_app() as url:
        yield url


@needs_data
def test_upload_in_a_real_browser_shows_both_predictions_and_overlays(app_url):
    from playwright.sync_api import expect, sync_playwright

    tile = DATA_DIR / "lung_aca" / "lungaca1.jpeg"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            expect(page.get_by_text("Research use only")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(tile))
            expect(page.get_by_text("Grad-CAM:").first).to_be_visible(timeout=180_000)
            assert page.get_by_text("Grad-CAM:").count() == 2
            assert page.get_by_text("Prediction", exact=True).count() == 2
            assert page.locator("[data-testid=stImage] img").count() >= 4
            assert page.get_by_text("Traceback").count() == 0
            if os.environ.get("LUNGFAKE_SCREENSHOT"):
                page.screenshot(path=os.environ["LUNGFAKE_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
