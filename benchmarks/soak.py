"""Does the app leak memory? Many uploads of different tiles in one AppTest session, resident memory after each.

Prints the resident set size every 20 uploads and its growth after the first 20 (target: at most 50 MB over
300 uploads), with the garbage-collection set-up the app uses.

    python benchmarks/soak.py [--uploads 300] [--data-dir ../shared/data/lc25000_lung]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lungfake.data import list_tiles, resolve_data_root

REPO = Path(__file__).resolve().parent.parent


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from streamlit.testing.v1 import AppTest

    root = resolve_data_root(args.data_dir)
    tiles = list_tiles(root)[:: max(1, 15000 // args.uploads)][: args.uploads]
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    curve, started = [], time.perf_counter()
    for i, tile in enumerate(tiles, 1):
        at.file_uploader[0].upload(Path(tile.path).name, (root / tile.path).read_bytes(), "image/jpeg").run()
        assert not at.exception, [e.value for e in at.exception]
        if i == 1 or i % 20 == 0 or i == len(tiles):
            curve.append((i, resident_mb()))
            print(f"after {i} uploads: {curve[-1][1]:.0f} MB ({time.perf_counter() - started:.0f} s)", flush=True)
    after_20 = next(mb for n, mb in curve if n >= 20)
    print(f"growth from upload 20 to {curve[-1][0]}: {curve[-1][1] - after_20:+.0f} MB (target <= 50 MB)")


if __name__ == "__main__":
    main()
