"""Many users at once: concurrent browser sessions against `streamlit run` on loopback.

Each session (its own Playwright browser context, so its own Streamlit session) opens the scoring page,
uploads tiles, waits for every served model's prediction and overlay, and downloads the JSON result.
Prints errors, p50/p95 time to result, the server's peak memory, and whether every session got the
same probabilities for the same tile.

Usage: python benchmarks/load_test.py [--sessions 20] [--uploads 2] [--time-limit 900] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import threading
import time
from pathlib import Path

from lungfake.app_server import CHROMIUM, CHROMIUM_ARGS, app_server
from lungfake.serving.registry import load_registry

# Under every overlay (or its caution): what it is worth; "Grad-CAM:" in checkouts from before the measure (--app-dir)
OVERLAY_CAPTION = re.compile("times as much as blurring a random fifth|Grad-CAM:")

REPO = Path(__file__).resolve().parent.parent

TILES = ("lung_aca/lungaca1.jpeg", "lung_n/lungn10.jpeg", "lung_scc/lungscc100.jpeg", "lung_aca/lungaca2000.jpeg")


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, from /proc."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending += [int(c) for c in children]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemoryWatch(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_mb, self.running = pid, every_s, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak_mb = max(self.peak_mb, process_tree_rss_mb(self.pid))
            time.sleep(self.every_s)


async def open_session(browser, url: str):
    """A new browser context (so a new Streamlit session) showing the scoring page."""
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = await context.new_page()
    await page.goto(url, wait_until="domcontentloaded", timeout=300_000)
    await expect(page.get_by_text("Research use only")).to_be_visible(timeout=300_000)
    return context, page


async def upload_and_read(page, tile: Path, deadline: float) -> tuple[float, dict]:
    """Upload a tile; seconds until every served model's result and overlay are shown, and the downloaded JSON."""
    from playwright.async_api import expect

    started = time.perf_counter()
    await page.locator("input[type=file]").set_input_files(str(tile))
    # The page names the scored file last, after every result and overlay is on screen.
    await expect(page.get_by_text(f"Scored: {tile.name}")).to_be_visible(timeout=_ms_left(deadline))
    seconds = time.perf_counter() - started
    await expect(page.get_by_text(OVERLAY_CAPTION)).to_have_count(len(load_registry()),
                                                                                  timeout=_ms_left(deadline))
    async with page.expect_download(timeout=_ms_left(deadline)) as info:
        await page.get_by_role("button", name="Download result (JSON)").click(timeout=_ms_left(deadline))
    return seconds, json.loads(Path(await (await info.value).path()).read_text())


def _ms_left(deadline: float) -> float:
    """Every wait is bounded by the run's deadline, not by Playwright's fixed defaults."""
    return max(1.0, deadline - time.monotonic()) * 1000


async def one_session(page, tiles: list[Path], index: int, uploads: int, deadline: float, results: list) -> None:
    try:
        for n in range(uploads):
            if time.monotonic() > deadline:
                break
            tile = tiles[(index + n) % len(tiles)]
            seconds, payload = await upload_and_read(page, tile, deadline)
            shown_errors = await page.get_by_text("Traceback").count() + await page.locator("[data-testid=stException]").count()
            results.append({"session": index, "tile": tile.name, "seconds": seconds, "payload": payload,
                            "error": None if shown_errors == 0 else "exception shown"})
    except Exception as exc:  # counted and reported: the benchmark measures failures rather than stopping at one
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
        results.append({"session": index, "tile": None, "seconds": None, "payload": None, "error": error})


async def run_load(url: str, server_pid: int, tiles: list[Path], sessions: int, uploads: int, time_limit: float) -> list[dict]:
    """Open every session first (chromium shares this machine's cores), then upload from all at once."""
    from playwright.async_api import async_playwright

    results: list[dict] = []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        started = time.perf_counter()
        opened = [await open_session(browser, url) for _ in range(sessions)]
        print(f"opened {sessions} sessions one by one in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        warm_up: list[dict] = []
        await one_session(opened[0][1], tiles, len(tiles) - 1, 1, time.monotonic() + time_limit, warm_up)
        print(f"warm-up upload (models load on the first one): {time.perf_counter() - started:.0f} s, "
              f"{'ok' if warm_up and warm_up[0]['error'] is None else warm_up}")
        deadline = time.monotonic() + time_limit
        started, server_cpu = time.perf_counter(), cpu_seconds(server_pid)
        await asyncio.gather(*(one_session(page, tiles, i, uploads, deadline, results) for i, (_, page) in enumerate(opened)))
        print(f"concurrent phase: {time.perf_counter() - started:.0f} s wall, of which the server used "
              f"{cpu_seconds(server_pid) - server_cpu:.0f} CPU-s (the browser shares the same cores)")
        for context, _ in opened:
            await context.close()
        await browser.close()
    return results


def report(results: list[dict], peak_mb: float, wall_s: float) -> None:
    done = [r for r in results if r["error"] is None]
    failed = [r for r in results if r["error"] is not None]
    times = sorted(r["seconds"] for r in done)
    print(f"uploads scored: {len(done)}, errors: {len(failed)}, wall {wall_s:.0f} s")
    for r in failed[:5]:
        print(f"  session {r['session']}: {r['error']}")
    if times:
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        print(f"time to result: p50 {statistics.median(times):.1f} s, p95 {p95:.1f} s, max {times[-1]:.1f} s")
    print(f"server peak memory (RSS, process tree): {peak_mb:.0f} MB (target < 2500 MB)")
    by_tile: dict[str, set] = {}
    for r in done:
        by_tile.setdefault(r["tile"], set()).add(json.dumps(r["payload"]["models"], sort_keys=True))
    consistent = all(len(v) == 1 for v in by_tile.values())
    counts = ", ".join(f"{tile}: {sum(r['tile'] == tile for r in done)} uploads" for tile in by_tile)
    print(f"same tile, same probabilities in every session: {consistent} ({counts})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--uploads", type=int, default=2, help="uploads per session")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds before sessions stop uploading")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "lc25000_lung")
    args = parser.parse_args()
    tiles = [args.data_dir / t for t in TILES if (args.data_dir / t).exists()]
    if not tiles:
        print(f"no tiles under {args.data_dir}; pass --data-dir")
        return 1
    with app_server(start_timeout_s=120) as (url, process):
        watch = MemoryWatch(process.pid)
        watch.start()
        started = time.perf_counter()
        results = asyncio.run(run_load(url, process.pid, tiles, args.sessions, args.uploads, args.time_limit))
        wall = time.perf_counter() - started
        watch.running = False
        watch.join()
    print(f"{args.sessions} concurrent sessions x {args.uploads} uploads of {len(tiles)} distinct tiles")
    report(results, watch.peak_mb, wall)
    return 0 if all(r["error"] is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
