"""Does the app leak memory? Many uploads of different tiles in one AppTest session, resident memory after each.

Prints the resident set size every 20 uploads and its growth after the first 20 (target: at most 50 MB over
300 uploads), the server's process and the models' process together.

    python benchmarks/soak.py [--uploads 300] [--data-dir ../shared/data/lc25000_lung]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lungfake.data.tiles import list_tiles, resolve_data_root

REPO = Path(__file__).resolve().parent.parent


def resident_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def children() -> list[int]:
    """This process's children: the app's models' process (lungfake.scoring.process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def app_resident_mb() -> tuple[float, float]:
    """(the server's process, the models' process) resident memory."""
    return resident_mb(), sum(resident_mb(pid) for pid in children())


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
            server, models = app_resident_mb()
            curve.append((i, server + models))
            print(f"after {i} uploads: {server + models:.0f} MB (server {server:.0f}, models' process {models:.0f}; "
                  f"{time.perf_counter() - started:.0f} s)", flush=True)
    after_20 = next(mb for n, mb in curve if n >= 20)
    print(f"growth from upload 20 to {curve[-1][0]}: {curve[-1][1] - after_20:+.0f} MB (target <= 50 MB)")


if __name__ == "__main__":
    main()
