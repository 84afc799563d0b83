"""What test-time augmentation (the mean over a tile's 8 rotations and mirror images) buys and costs.

Scores every Nth grouped test tile through the one scoring path (lungfake.scoring.Scorer), once plainly and
once with --tta, and prints each served model's and the ensemble's accuracy both ways, with the time per tile.

    python benchmarks/tta_gain.py [--every 3] [--data-dir ../shared/data/lc25000_lung]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def accuracies(scores, truth: list[str]) -> dict[str, float]:
    names = {arch: m.name for arch, m in scores[0].models.items()} | ({"ensemble": "Ensemble"} if scores[0].ensemble else {})
    result = {}
    for arch, name in names.items():
        predicted = [(s.ensemble if arch == "ensemble" else s.models[arch]).predicted for s in scores]
        result[name] = float(np.mean([p == t for p, t in zip(predicted, truth)]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    from lungfake.data import read_rgb, resolve_data_root
    from lungfake.scoring import Scorer
    from lungfake.splits import load_split, rows_on
    from lungfake.store import WeightsStore

    root = resolve_data_root(args.data_dir)
    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "test")[:: args.every]
    tiles, truth = [read_rgb(root / r.path) for r in rows], [r.label for r in rows]
    scorer = Scorer.load()
    scorer.score(tiles[:8], tta=True)  # warm up both paths
    timings, results = {}, {}
    for tta in (False, True):
        started = time.perf_counter()
        scores = [s for start in range(0, len(tiles), 64) for s in scorer.score(tiles[start : start + 64], tta=tta)]
        timings[tta] = (time.perf_counter() - started) / len(tiles) * 1000
        results[tta] = accuracies(scores, truth)
    print(f"{len(tiles)} grouped test tiles (1 in {args.every}), {len(scorer.served)} models")
    print("| model | plain | with TTA | gain |\n|---|---|---|---|")
    for name in results[False]:
        plain, tta = results[False][name], results[True][name]
        print(f"| {name} | {plain:.1%} | {tta:.1%} | {(tta - plain) * 100:+.1f} pts |")
    print(f"time per tile, every model and the OOD screen, batches of 64: plain {timings[False]:.0f} ms, "
          f"with TTA {timings[True]:.0f} ms")


if __name__ == "__main__":
    main()
