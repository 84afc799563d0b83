"""Save a screenshot of the evaluation dashboard (no dataset tiles on it) to docs/dashboard.png.

Usage: .venv/bin/python scripts/screenshot_dashboard.py  (needs Debian's chromium at /usr/bin/chromium)
"""
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from lungfake.app_server import CHROMIUM, CHROMIUM_ARGS, running_app

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)  # through the entry point, so st.navigation (not the pages/ folder) builds the menu
        page.get_by_text("Evaluation dashboard").first.click()
        page.get_by_text("Do the models differ?").wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
        time.sleep(3)  # let plotly finish drawing
        page.screenshot(path=str(REPO / "docs" / "dashboard.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
