"""How faithful each served model's overlay is, by every method cam.py offers: deletion and insertion margins over
random maps of the same resolution (95% intervals over families), the highlighted fifth against a random fifth, the
border figures, the randomisation check, cells per side and milliseconds per map (lungfake/faithfulness.py).

Prints figures only; `python -m lungfake explanations` is what chooses each model's method (on validation tiles)
and records it. Use --side val to see what the choice rests on, --side test for what is reported.

    python benchmarks/explanations.py [--side test] [--every 12] [--arch all] [--methods gradcam,gradcam-stitched]

With --specificity (and, for issue 53's tiles, --every 24 --start 8) it prints instead how tile-specific each model's
registered map is: its highlighted fifth against another tile's map and against smooth random maps, its likeness to
the model's mean map and its border peaks (faithfulness.tile_specificity); with --precise as well, the same for the
precise overlay offered on request.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from lungfake.data.tiles import resolve_data_root
from lungfake.errors import TrainingError
from lungfake.evaluation.evaluator import Evaluator, resized_to
from lungfake.evaluation.explanation_check import describe, measure, measure_specificity, randomised_model, with_method
from lungfake.explain.cam import methods_for
from lungfake.serving.inference import LoadedModel, select_entries
from lungfake.serving.registry import METHOD_LABELS
from lungfake.training.trainer import verified_trained_model


def specificity(tiles, families, which: str, precise: bool) -> None:
    for entry in select_entries(which):
        if precise and not entry.precise_method:
            print(f"{entry.display_name or entry.arch}: no precise overlay registered")
            continue
        model = LoadedModel.load(entry)
        model = model.with_entry(entry.as_precise()) if precise else model
        entry = model.entry
        figures = measure_specificity(model, resized_to(tiles, entry.input_size).astype("float32"), families)
        low, high = figures.own_vs_other_ratio_ci95
        s_low, s_high = figures.own_vs_smooth_ratio_ci95
        print(f"{entry.display_name or entry.arch} ({METHOD_LABELS[entry.explanation_method]}): own map vs another tile's "
              f"x{figures.own_vs_other_ratio:.2f} ({low:.2f}-{high:.2f}), vs smooth random maps x{figures.own_vs_smooth_ratio:.2f} "
              f"({s_low:.2f}-{s_high:.2f}), correlation with the mean map {figures.mean_map_correlation:.2f}, peak in the "
              f"outer eighth {figures.border_peak_share:.0%}; meets the targets: {figures.passes}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--side", choices=("val", "test"), default="test")
    parser.add_argument("--every", type=int, default=12, help="every n-th tile of that side of the grouped split")
    parser.add_argument("--start", type=int, default=0, help="the first tile taken")
    parser.add_argument("--specificity", action="store_true", help="the tile-specific measures of the registered maps")
    parser.add_argument("--precise", action="store_true", help="with --specificity: of the precise overlays instead")
    parser.add_argument("--arch", default="all")
    parser.add_argument("--methods", default=",".join(METHOD_LABELS))
    parser.add_argument("--randomisation", action="store_true", help="also re-initialise the top block (needs TensorFlow "
                        "and the trained Keras model, docs/models.md#trained-keras-models)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    evaluator = Evaluator(resolve_data_root(args.data_dir))
    tiles = evaluator.pixels("grouped", args.side, 224)[args.start :: args.every]
    families = evaluator.families("grouped", args.side)[args.start :: args.every]
    print(f"{len(tiles)} grouped {args.side} tiles from {len(set(families))} families")
    if args.specificity:
        return specificity(tiles, families, args.arch, args.precise)
    for entry in select_entries(args.arch):
        pixels = resized_to(tiles, entry.input_size).astype("float32")
        loaded = LoadedModel.load(entry)
        for method in [m for m in args.methods.split(",") if m in methods_for(loaded)]:
            model = loaded.with_entry(with_method(entry, method))
            with tempfile.TemporaryDirectory() as scratch:
                randomised = None
                if args.randomisation:
                    try:
                        randomised = randomised_model(model.entry, verified_trained_model(entry.arch, "grouped"), Path(scratch))
                    except TrainingError as exc:
                        print(f"  (randomisation check not run: {exc})")
                figures = measure(model, pixels, families, randomised)
            chosen = " (registered)" if method == entry.explanation_method else ""
            print(f"{entry.display_name or entry.arch}{chosen}: {describe(figures)}", flush=True)


if __name__ == "__main__":
    main()
