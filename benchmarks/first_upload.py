"""A visitor to a server that has just started: seconds from `streamlit run` to every model's result and overlay.

For each of --runs fresh servers: start the server, open the scoring page in chromium as soon as it answers,
upload one tile at once, and wait until every served model's result and Grad-CAM overlay are shown. Prints the
server's start, the page, the upload's wait and the whole, each run and their medians.

    python benchmarks/first_upload.py [TILE] [--runs 3] [--app-dir DIR]

--app-dir serves another checkout (e.g. `git worktree add /tmp/before a411029`) for a before-and-after figure.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path

from lungfake.app_server import CHROMIUM, CHROMIUM_ARGS, REPO, app_server

# Under every overlay (or its caution): what it is worth; "Grad-CAM:" in checkouts from before the measure (--app-dir)
OVERLAY_CAPTION = re.compile("times as much as blurring a random fifth|Grad-CAM:")

TIMEOUT_MS = 300_000


async def visit(url: str, tile: Path, models: int) -> tuple[float, float]:
    """(seconds until the page shows, seconds from the upload to every result and overlay)."""
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        started = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        await expect(page.get_by_text("Research use only")).to_be_visible(timeout=TIMEOUT_MS)
        shown = time.perf_counter()
        await page.locator("input[type=file]").set_input_files(str(tile))
        await expect(page.get_by_text(OVERLAY_CAPTION)).to_have_count(models, timeout=TIMEOUT_MS)
        await expect(page.get_by_text(f"Scored: {tile.name}")).to_be_visible(timeout=TIMEOUT_MS)
        scored = time.perf_counter()
        await browser.close()
    return shown - started, scored - shown


def one_run(app_dir: Path, tile: Path, models: int) -> dict[str, float]:
    started = time.perf_counter()
    with app_server(repo=app_dir) as (url, _process):
        healthy = time.perf_counter() - started
        page, upload = asyncio.run(visit(url, tile, models))
    return {"server": healthy, "page": page, "upload": upload, "total": healthy + page + upload}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_tile = REPO.parent / "shared" / "data" / "lc25000_lung" / "lung_aca" / "lungaca1.jpeg"
    parser.add_argument("tile", nargs="?", default=str(default_tile))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--app-dir", default=str(REPO), help="the checkout to serve (default: this one)")
    parser.add_argument("--models", type=int, default=3, help="how many models' overlays to wait for")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        runs.append(one_run(Path(args.app_dir), Path(args.tile), args.models))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()), flush=True)
    print(f"{args.app_dir}: median over {len(runs)} fresh servers: "
          + ", ".join(f"{k} {statistics.median(r[k] for r in runs):.2f} s" for k in runs[0]))


if __name__ == "__main__":
    main()
