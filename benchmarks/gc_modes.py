"""Streamlit's after-run garbage collection and the app's gc.freeze(), measured side by side.

After every script run Streamlit calls gc.collect() (the documented ``[runner] postScriptGC`` option, on by
default). The app moves its loaded models out of the collector's sight with gc.freeze(). Each mode runs in
its own process: N uploads of different tiles through AppTest, the median page-run time after the first
few, resident memory growth over the run (a leak check for turning collection off), and what one full
collection, gc.collect(2), costs with the models loaded. AppTest's page-run time does not include
Streamlit's after-run collection (it runs after the run is reported finished), but on a server that
collection holds the GIL, twice per upload, while every other session waits.

    python benchmarks/gc_modes.py [--uploads 60]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = {
    "freeze + postScriptGC (the app's setting)": {"freeze": True, "post_script_gc": True},
    "no freeze + postScriptGC": {"freeze": False, "post_script_gc": True},
    "no freeze, postScriptGC off": {"freeze": False, "post_script_gc": False},
}


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_mode(freeze: bool, post_script_gc: bool, uploads: int) -> dict:
    import gc

    from streamlit import config
    from streamlit.testing.v1 import AppTest

    from lungfake.data import list_tiles, resolve_data_root

    if not freeze:
        gc.freeze = lambda: None  # the app calls it once, when its models are first loaded
    config.set_option("runner.postScriptGC", post_script_gc)
    root = resolve_data_root(None)
    tiles = list_tiles(root)[:: 15000 // uploads][:uploads]
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    seconds, start_mb = [], None
    for i, tile in enumerate(tiles):
        started = time.perf_counter()
        at.file_uploader[0].upload(Path(tile.path).name, (root / tile.path).read_bytes(), "image/jpeg").run()
        seconds.append(time.perf_counter() - started)
        if i == 4:
            start_mb = resident_mb()
    collections = []
    for _ in range(5):
        started = time.perf_counter()
        gc.collect(2)
        collections.append(time.perf_counter() - started)
    return {"median_s": statistics.median(seconds[5:]), "growth_mb": resident_mb() - start_mb, "rss_mb": resident_mb(),
            "collect_s": statistics.median(collections)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(**MODES[args.mode], uploads=args.uploads)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--uploads", str(args.uploads)], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        print(f"{mode}: median upload run {result['median_s'] * 1000:.0f} ms, one gc.collect(2) "
              f"{result['collect_s'] * 1000:.0f} ms, resident memory {result['rss_mb']:.0f} MB, "
              f"growth over uploads 5-{args.uploads} {result['growth_mb']:+.0f} MB")


if __name__ == "__main__":
    main()
