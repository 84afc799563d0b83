"""Where the served models go wrong on validation tiles: the same tiles and families, or different ones?

Every from-scratch recipe tried here levels off near 96% on validation. If the models' errors fall on
different tiles, a better way of combining them could still gain; if they fall on the same few families,
no recipe or ensemble of this kind will, and those families are what to look at. Only validation tiles
are used (every copy of every grouped validation family), so nothing here sees a test tile.

Prints, for each served model at its served size, its accuracy and how many of its errors the others
share; the tiles every model gets wrong; the best any combination could do (a tile counts as right when
any model is); the mean-probability ensemble and the majority vote; how concentrated the errors are in
families; and, for reference, how many of them the colour baseline (fitted on train) also gets wrong.

    python benchmarks/val_error_overlap.py [--data-dir ../shared/data/lc25000_lung] [--top 8]
"""
from __future__ import annotations

import argparse
import os
from collections import Counter

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def served_val_probabilities(evaluator, entries) -> dict[str, np.ndarray]:
    """Calibrated class probabilities of every grouped validation tile, per served model."""
    from lungfake.calibration import apply_temperature
    from lungfake.evaluation import predict_probabilities
    from lungfake.registry import load_model

    found = {}
    for entry in entries:
        raw = predict_probabilities(load_model(entry), evaluator.pixels("grouped", "val", entry.input_size))
        found[entry.display_name or entry.arch] = apply_temperature(raw, entry.temperature)
    return found


def colour_baseline_val_predictions(root, rows) -> np.ndarray:
    from lungfake.baselines import COLOUR_SIZE
    from lungfake.classes import class_index
    from lungfake.colour import colour_baseline, lab_statistics
    from lungfake.data import read_split_pixels
    from lungfake.splits import rows_on

    train, val = rows_on(rows, "train"), rows_on(rows, "val")
    labels = np.array([class_index(r.label) for r in train])
    model = colour_baseline().fit(lab_statistics(read_split_pixels(root, train, COLOUR_SIZE)), labels)
    return model.predict(lab_statistics(read_split_pixels(root, val, COLOUR_SIZE)))


def print_overlap(wrong: dict[str, np.ndarray]) -> None:
    names = list(wrong)
    print("| model | val accuracy | errors | " + " | ".join(f"also wrong in {n}" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for name in names:
        shared = [f"{int(np.sum(wrong[name] & wrong[other]))}" for other in names]
        print(f"| {name} | {1 - wrong[name].mean():.1%} | {int(wrong[name].sum())} | " + " | ".join(shared) + " |")


def print_families(any_wrong: np.ndarray, families: np.ndarray, truth: np.ndarray, predictions: dict, top: int) -> None:
    from lungfake.classes import CLASS_NAMES

    tiles_per_family = Counter(families)
    errors_per_family = Counter(families[any_wrong])
    ranked = errors_per_family.most_common()
    total = sum(errors_per_family.values())
    covered = sum(count for _, count in ranked[:top])
    print(f"\nTiles some model gets wrong: {total}, in {len(ranked)} of {len(tiles_per_family)} families; "
          f"the {top} worst families hold {covered} ({covered / max(total, 1):.0%}).")
    print("| family | true class | tiles | " + " | ".join(f"{n} wrong (called)" for n in predictions) + " |")
    print("|---|---|---|" + "---|" * len(predictions))
    for family, _ in ranked[:top]:
        members = families == family
        label = CLASS_NAMES[int(truth[members][0])]
        cells = []
        for predicted in predictions.values():
            missed = members & (predicted != truth)
            called = Counter(CLASS_NAMES[int(p)] for p in predicted[missed]).most_common(1)
            cells.append(f"{int(missed.sum())}" + (f" ({called[0][0]})" if called else ""))
        print(f"| {family} | {label} | {tiles_per_family[family]} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--top", type=int, default=8, help="how many of the worst families to list")
    args = parser.parse_args()

    from lungfake.calibration import ensemble_probabilities
    from lungfake.data import resolve_data_root
    from lungfake.evaluation import Evaluator
    from lungfake.inference import select_entries
    from lungfake.registry import load_ensemble_calibration

    root = resolve_data_root(args.data_dir)
    evaluator = Evaluator(root)
    entries = list(select_entries("all"))
    truth = evaluator.labels("grouped", "val", entries[0].class_names)
    families = evaluator.families("grouped", "val")
    print(f"{len(truth)} grouped validation tiles in {len(set(families))} families; models at their served sizes\n")

    probabilities = served_val_probabilities(evaluator, entries)
    predictions = {name: p.argmax(axis=1) for name, p in probabilities.items()}
    wrong = {name: predicted != truth for name, predicted in predictions.items()}
    print_overlap(wrong)

    stacked = np.stack(list(wrong.values()))
    votes = np.stack(list(predictions.values()))
    majority = np.array([Counter(column).most_common(1)[0][0] for column in votes.T])
    mean = ensemble_probabilities(list(probabilities.values()), load_ensemble_calibration().temperature).argmax(axis=1)
    print(f"\nWrong in every model: {int(stacked.all(axis=0).sum())} tiles; wrong in at least one: {int(stacked.any(axis=0).sum())}")
    print(f"Right in at least one model (the most any combination could reach): {1 - stacked.all(axis=0).mean():.1%}")
    print(f"Mean-probability ensemble (as served): {np.mean(mean == truth):.1%}; majority vote: {np.mean(majority == truth):.1%}")

    print_families(stacked.any(axis=0), families, truth, predictions, args.top)

    colour_wrong = colour_baseline_val_predictions(root, evaluator.rows("grouped")) != truth
    print(f"\nColour baseline (CIELAB mean and std, fitted on train) on val: {1 - colour_wrong.mean():.1%}")
    for name, mistakes in wrong.items():
        print(f"  of {name}'s {int(mistakes.sum())} errors, the colour baseline also makes {int(np.sum(mistakes & colour_wrong))}")


if __name__ == "__main__":
    main()
