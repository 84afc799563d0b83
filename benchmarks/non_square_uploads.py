"""What a non-square upload costs, and whether another way of making it square would cost less.

The scoring path resizes any image to each model's square input, so a non-square field is squashed. This
cuts validation tiles (every 3rd) to a centred field of 1.5:1 and 2:1 and scores them three ways through the
one scoring path: squashed (what the app does), the short side's square in the centre (the rest cut away,
the field enlarged), and mirrored out to a square at its own scale (as training's zoom-out does).
Validation tiles only.

Usage: python benchmarks/non_square_uploads.py [--data-dir DIR] [--every 3]
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
RATIOS = (1.5, 2.0)


def centre_square(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return rgb[top : top + side, left : left + side]


def mirrored_square(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    extra_rows, extra_columns = max(height, width) - height, max(height, width) - width
    return cv2.copyMakeBorder(rgb, extra_rows // 2, extra_rows - extra_rows // 2, extra_columns // 2,
                              extra_columns - extra_columns // 2, cv2.BORDER_REFLECT_101)


WAYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "squashed (today)": lambda rgb: rgb, "centre square": centre_square, "mirrored square": mirrored_square,
}


def field_of(rgb: np.ndarray, ratio: float) -> np.ndarray:
    """The centred field ratio times as tall as it is wide."""
    width = int(round(rgb.shape[1] / ratio))
    start = (rgb.shape[1] - width) // 2
    return rgb[:, start : start + width]


def accuracies(scorer, images: list[np.ndarray], labels: list[str]) -> dict[str, float]:
    scores = scorer.score(images)
    found = {arch: np.mean([s.models[arch].predicted == y for s, y in zip(scores, labels)]) for arch in scores[0].models}
    if scores[0].ensemble is not None:
        found["ensemble"] = np.mean([s.ensemble.predicted == y for s, y in zip(scores, labels)])
    return found


def main() -> int:
    from lungfake.data import read_split_pixels, resolve_data_root
    from lungfake.scoring import Scorer
    from lungfake.splits import load_split, rows_on
    from lungfake.store import WeightsStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--every", type=int, default=3)
    args = parser.parse_args()
    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "val")[:: args.every]
    tiles, labels = list(read_split_pixels(resolve_data_root(args.data_dir), rows)), [r.label for r in rows]
    scorer = Scorer.load("all")
    square = accuracies(scorer, tiles, labels)
    print(f"{len(tiles)} validation tiles (one in {args.every}); accuracy on the square tiles: "
          + ", ".join(f"{k} {v:.1%}" for k, v in square.items()))
    for ratio in RATIOS:
        fields = [field_of(t, ratio) for t in tiles]
        for way, make_square in WAYS.items():
            found = accuracies(scorer, [make_square(f) for f in fields], labels)
            print(f"{ratio:g}:1 {way}: " + ", ".join(f"{k} {v:.1%} ({(v - square[k]) * 100:+.1f})" for k, v in found.items()),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
