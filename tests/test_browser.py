"""One real browser test: streamlit run on loopback, Debian's chromium driven by Playwright."""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lungfake.app_server import CHROMIUM, CHROMIUM_ARGS, REPO, running_app
from lungfake.serving.registry import load_registry
from tests.helpers import DATA_DIR, needs_data

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian chromium not installed at {CHROMIUM}"),
    pytest.mark.skipif(shutil.which("streamlit", path=os.path.dirname(sys.executable)) is None, reason="streamlit not installed"),
]


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    with running_app(log_path=log_path) as url:
        yield url, log_path


def _files_changed_since(started: float) -> list[Path]:
    """Files under the temp folder and the repository written since a time (virtualenvs and git skipped)."""
    changed = []
    for root in (tempfile.gettempdir(), str(REPO)):
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = [d for d in subfolders if d not in (".venv", ".git", "node_modules") and not d.startswith("pytest-of")]
            for name in files:
                path = Path(folder, name)
                try:
                    if path.is_file() and path.stat().st_mtime >= started:
                        changed.append(path)
                except OSError:
                    continue
    return changed


def _holds(path: Path, marker: bytes) -> bool:
    """Whether a file holds the bytes; a file another process removed meanwhile holds nothing."""
    try:
        return marker in path.read_bytes()
    except OSError:
        return False


FIRST_URLS = {"": "Score a lung H&E tile", "batch": "Score a batch of tiles", "region": "Map a whole region", "slide": "Map a slide",
              "dashboard": "Evaluation dashboard", "error_browser": "Error browser", "about": "About lungfake / model card"}


@pytest.mark.parametrize("path", list(FIRST_URLS), ids=[p or "root" for p in FIRST_URLS])
def test_each_page_url_opened_first_on_a_fresh_server_is_routed_by_the_entry_point(path):
    """Until st.navigation is first called, Streamlit serves pages/ as pages of their own; a page opened first
    on a fresh server must still get the app's menu and titles (pages.common.enter_page)."""
    from playwright.sync_api import expect, sync_playwright

    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/{path}")
            expect(page.get_by_role("heading", name=FIRST_URLS[path])).to_be_visible(timeout=60_000)
            navigation = page.get_by_test_id("stSidebarNav")
            for title in ("Score a tile", "Evaluation dashboard", "About / model card"):
                expect(navigation.get_by_text(title, exact=True)).to_be_visible(timeout=30_000)
            assert navigation.get_by_text("common", exact=True).count() == 0
            assert navigation.get_by_text("streamlit app", exact=True).count() == 0
        finally:
            browser.close()


SLIDE = REPO.parent / "shared" / "data" / "slides" / "cmu_small_region.svs"


@pytest.mark.skipif(not SLIDE.is_file(), reason=f"no shared slide at {SLIDE}")
def test_a_slide_uploaded_in_a_real_browser_is_mapped_with_its_summary_and_downloads(served_app):
    from playwright.sync_api import expect, sync_playwright

    app_url, _ = served_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{app_url}/slide")
            expect(page.get_by_role("heading", name="Map a slide")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(SLIDE))
            expect(page.get_by_text("minutes to map")).to_be_visible(timeout=120_000)
            page.get_by_role("button", name="Map this slide").click()
            expect(page.get_by_text("0.499 um/px from the file's metadata")).to_be_visible(timeout=300_000)
            expect(page.locator("[data-testid=stPlotlyChart]")).to_have_count(1, timeout=60_000)
            for label in ("Map (PNG)", "Tiles (CSV)", "Tiles for QuPath (GeoJSON)", "Slide report (HTML)"):
                expect(page.get_by_role("button", name=label)).to_be_visible(timeout=60_000)
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()


def test_upload_in_a_real_browser_shows_both_predictions_and_overlays(served_app):
    from playwright.sync_api import expect, sync_playwright

    app_url, log_path = served_app
    tile = DATA_DIR / "lung_scc" / "lungscc1.jpeg"  # the longest class name
    started = time.time() - 1
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            expect(page.get_by_text("Research use only")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(tile))
            # every overlay's caption (or, for a map that failed the faithfulness or tile-specific test, its caution) says
            # what it is worth
            worth = page.get_by_text("times as much as blurring")
            expect(worth.first).to_be_visible(timeout=300_000)
            served = len(load_registry())
            trusted = sum(bool(e.trust and e.trust.is_evidence) for e in load_registry().values())
            # Streamlit sends the page's elements as the script writes them: wait until every column is there.
            expect(worth).to_have_count(served, timeout=60_000)
            assert worth.count() == served
            expect(page.get_by_text("Prediction", exact=True)).to_have_count(served + (served > 1), timeout=60_000)
            assert page.get_by_text("Prediction", exact=True).count() == served + (served > 1)  # and the ensemble
            assert page.locator("[data-testid=stImage] img").count() >= trusted + 1
            # Every prediction reads in full, even "Lung squamous cell carcinoma" in a model's narrow column.
            values = page.locator("[data-testid=stMetricValue] [data-testid=stMarkdownContainer]")
            assert values.count() == served + (served > 1)
            cut = "values => values.flatMap(v => [v, ...v.querySelectorAll('p')]).filter(e => e.scrollWidth > e.clientWidth + 1)"
            assert values.evaluate_all(cut + ".length") == 0
            # The verdict leads: one heading above every model's column, naming cancer vs benign or the subtype.
            verdict = page.locator("[data-testid=stAlert] h3")
            assert verdict.count() == 1 and verdict.inner_text().strip() in {
                "Benign lung tissue", "Lung adenocarcinoma", "Lung squamous cell carcinoma", "Carcinoma, subtype uncertain"}
            first_prediction = page.get_by_text("Prediction", exact=True).first
            assert verdict.bounding_box()["y"] < first_prediction.bounding_box()["y"]
            assert page.get_by_text("Traceback").count() == 0
            # the precise overlays, on request: one more caption per model, each saying what it is worth
            page.get_by_role("button", name="Compute the precise overlays").click()
            expect(worth).to_have_count(2 * served, timeout=120_000)
            assert page.get_by_text("Traceback").count() == 0
            if os.environ.get("LUNGFAKE_SCREENSHOT"):
                page.screenshot(path=os.environ["LUNGFAKE_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
    # The upload lives only in memory: no file written since holds its bytes, and the server log never names it.
    marker = tile.read_bytes()[2000:2064]
    written = [path for path in _files_changed_since(started) if _holds(path, marker)]
    assert written == []
    assert tile.name not in log_path.read_text(errors="ignore")


def test_a_large_image_on_the_tile_page_is_sent_on_to_the_region_page(served_app, tmp_path):
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers import he_like

    field = tmp_path / "field.png"
    rows = [np.concatenate([he_like(3 * row + col, 768) for col in range(3)], axis=1) for row in range(2)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(field)  # 2304 x 1536: at the default 40x, 3 x 2 tiles
    app_url, _log = served_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            page.locator("input[type=file]").set_input_files(str(field))
            page.get_by_role("button", name="Map this image as a region").click(timeout=300_000)
            expect(page.get_by_role("heading", name="Map a whole region")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Mapping field.png, sent from the tile page")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Scored: field.png")).to_be_visible(timeout=300_000)
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()


@needs_data
def test_region_page_in_a_real_browser_maps_a_microscope_sized_photograph(served_app, tmp_path):
    """A 2048x1536 'photograph' made of real tiles, at the page's default scale (40x): tissue found, tiles
    scored with a progress bar, the map, the suspicious tiles' Grad-CAM and three downloads shown."""
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    tiles = [np.asarray(Image.open(path).convert("RGB")) for path in sorted((DATA_DIR / "lung_scc").glob("*.jpeg"))[:12]]
    mosaic = np.concatenate([np.concatenate(tiles[r * 4 : r * 4 + 4], axis=1) for r in range(3)], axis=0)
    photograph = tmp_path / "field.jpg"
    Image.fromarray(mosaic).resize((2048, 1536), Image.Resampling.BICUBIC).save(photograph, quality=92)
    app_url, _log = served_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.goto(f"{app_url}/region")
            expect(page.get_by_role("heading", name="Map a whole region")).to_be_visible(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(photograph))
            expect(page.get_by_text("tissue tiles of 736 px")).to_be_visible(timeout=300_000)
            expect(page.get_by_text("class probabilities over the tissue")).to_be_visible()
            expect(page.get_by_text("Download case report (HTML)")).to_be_visible(timeout=60_000)
            assert page.get_by_text("Traceback").count() == 0
            with page.expect_download(timeout=60_000) as download:  # the report is built only now, on the click
                page.get_by_text("Download case report (HTML)").click()
            report = Path(download.value.path()).read_text()
            assert "Region report" in report and "Research use only" in report and "data:image/jpeg;base64," in report
            if os.environ.get("LUNGFAKE_REGION_SCREENSHOT"):
                page.screenshot(path=os.environ["LUNGFAKE_REGION_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
