"""Save a screenshot of the evaluation dashboard (no dataset tiles on it) to docs/dashboard.png.

Usage: .venv/bin/python scripts/screenshot_dashboard.py  (needs Debian's chromium at /usr/bin/chromium)
"""
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
PORT = 8765


def main() -> None:
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "streamlit"), "run", "streamlit_app.py", "--server.port", str(PORT),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{PORT}/dashboard")
            page.get_by_text("The leakage gap").wait_for(timeout=60_000)
            time.sleep(3)  # let plotly finish drawing
            page.screenshot(path=str(REPO / "docs" / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
