"""One real browser test: streamlit run on loopback, Debian's chromium driven by Playwright."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import DATA_DIR, REPO, needs_data

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian chromium not installed at {CHROMIUM}"),
    pytest.mark.skipif(shutil.which("streamlit", path=os.path.dirname(sys.executable)) is None, reason="streamlit not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    port = _free_port()
    streamlit = os.path.join(os.path.dirname(sys.executable), "streamlit")
    process = subprocess.Popen(
        [streamlit, "run", str(REPO / "streamlit_app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start within 60 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@needs_data
def test_upload_in_a_real_browser_shows_both_predictions_and_overlays(app_url):
    from playwright.sync_api import expect, sync_playwright

    tile = DATA_DIR / "lung_aca" / "lungaca1.jpeg"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
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
