"""Validation accuracy of each served model when its tiles are fed at other input sizes.

Every served architecture is convolutional up to a global pooling, so its weights run at any size
(lungfake.training.at_input_size). A model that scores better on validation tiles at a larger size than
it was trained at has detail left to learn there: this is what chose the recipes' last cycles at a larger
size (lungfake.training.DEFAULT_RECIPES) and the size ResNet50 is served at. Only validation tiles are used,
all of them (every copy of every validation family), so the choice never sees a test tile. With --shifts, each
size is also scored on every 3rd validation tile under those named shifts (lungfake.robustness.named_shifts),
in brackets the change against the same tiles unshifted: a larger size must not make a model fragile.

    python benchmarks/input_size_on_val.py [--models mobilenetv2,resnet50] [--sizes 112,128,160,192,224]
                                           [--shifts "magnification 0.6x,magnification 1.6x"]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all", help="comma-separated architectures, or all")
    parser.add_argument("--sizes", default="112,128,160,192,224")
    parser.add_argument("--shifts", default="", help="comma-separated names of lungfake.robustness.named_shifts")
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    from lungfake.classes import class_index
    from lungfake.data import read_split_pixels, resolve_data_root
    from lungfake.inference import select_entries
    from lungfake.registry import load_model
    from lungfake.splits import load_split, rows_on
    from lungfake.store import WeightsStore
    from lungfake.robustness import named_shifts
    from lungfake.training import Recipe, at_input_size, make_dataset

    root = resolve_data_root(args.data_dir)
    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "val")
    tiles, truth = read_split_pixels(root, rows), np.asarray([class_index(r.label) for r in rows])
    sizes = [int(s) for s in args.sizes.split(",")]
    every_third, third_truth = tiles[::3], truth[::3]
    shifted = {name: np.stack([shift(t) for t in every_third]) for name, shift in named_shifts(None, None).items()
               if name in {n.strip() for n in args.shifts.split(",")}}
    print(f"{len(rows)} grouped validation tiles in {len({r.family for r in rows})} families"
          + (f"; shifts on every 3rd ({len(every_third)}): {', '.join(shifted)}" if shifted else ""))
    print("| model | served at | " + " | ".join(f"{s} px" for s in sizes) + " |\n|---|---|" + "---|" * len(sizes))
    for entry in select_entries(args.models):
        served, recipe = load_model(entry), Recipe.from_json(entry.recipe)
        cells = []
        for size in sizes:
            started = time.perf_counter()
            model = at_input_size(served, recipe, size)

            def accuracy(images, labels):
                batches = make_dataset(images, labels, recipe, training=False, size=size)
                return float(np.mean(np.argmax(model.predict(batches, verbose=0), axis=1) == labels))

            cell = f"{accuracy(tiles, truth):.1%}"
            if shifted:
                plain = accuracy(every_third, third_truth)
                cell += "".join(f"; {name} {(accuracy(images, third_truth) - plain) * 100:+.1f}" for name, images in shifted.items())
            cells.append(f"{cell} ({time.perf_counter() - started:.0f} s)")
        print(f"| {entry.display_name} | {entry.input_size} px | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
