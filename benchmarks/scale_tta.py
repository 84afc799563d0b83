"""Scale test-time augmentation: does averaging each model over the tile seen at several magnifications help under the
robustness benchmark's magnification shifts? Measured on validation tiles only (this is how the choice is made).

For every 3rd grouped validation tile, unchanged and at 0.6x and 1.6x (lungfake.scale.magnified), prints each
model's and the ensemble's accuracy with the plain tile and with the mean of its calibrated probabilities over the
views at --scales (default 0.7, 1.0, 1.4).

    python benchmarks/scale_tta.py [--data-dir ../shared/data/lc25000_lung] [--scales 0.7,1.0,1.4]
"""
from __future__ import annotations

import argparse

import numpy as np

from lungfake.data.tiles import resolve_data_root
from lungfake.evaluation.evaluator import Evaluator, predict_probabilities, resized_to
from lungfake.evaluation.robustness import magnified
from lungfake.serving.calibration import apply_temperature, ensemble_probabilities
from lungfake.serving.inference import LoadedModel
from lungfake.serving.registry import load_ensemble_calibration, load_registry

SHIFTS = {"clean": 1.0, "magnification 0.6x": 0.6, "magnification 1.6x": 1.6}


def validation_set(data_dir: str | None):
    """(evaluator, registry, ensemble calibration, every ROBUSTNESS_EVERY-th grouped validation tile, their labels):
    what this benchmark and scale_normalisation.py measure on."""
    evaluator, registry, calibration = Evaluator(resolve_data_root(data_dir)), load_registry(), load_ensemble_calibration()
    names = list(next(iter(registry.values())).class_names)
    tiles = evaluator.pixels("grouped", "val", 224)[:: evaluator.ROBUSTNESS_EVERY]
    labels = evaluator.labels("grouped", "val", names)[:: evaluator.ROBUSTNESS_EVERY]
    return evaluator, registry, calibration, tiles, labels


def calibrated(model: LoadedModel, tiles: np.ndarray) -> np.ndarray:
    """A served model's calibrated probabilities of 224 px tiles."""
    return apply_temperature(predict_probabilities(model, resized_to(tiles, model.entry.input_size)), model.entry.temperature)


def accuracy_line(members: dict[str, np.ndarray], labels: np.ndarray, calibration) -> str:
    """Each member's and the served ensemble's accuracy, as one printed line."""
    ensemble = ensemble_probabilities(list(members.values()), calibration.temperature, calibration.weights_for(list(members)))
    accuracy = {a: (p.argmax(1) == labels).mean() for a, p in {**members, "ensemble": ensemble}.items()}
    return "  ".join(f"{a} {v:.2%}" for a, v in accuracy.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--scales", default="0.7,1.0,1.4")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    _, registry, calibration, tiles, labels = validation_set(args.data_dir)
    models = {arch: LoadedModel.load(entry) for arch, entry in registry.items()}
    print(f"{len(tiles)} validation tiles; views at {scales}")
    for shift, factor in SHIFTS.items():
        shifted = np.stack([magnified(t, factor) for t in tiles]) if factor != 1.0 else tiles
        plain = {arch: calibrated(model, shifted) for arch, model in models.items()}
        averaged = {arch: np.mean([calibrated(model, np.stack([magnified(t, s) for t in shifted])) if s != 1.0 else plain[arch]
                                   for s in scales], axis=0) for arch, model in models.items()}
        for label, members in (("plain", plain), ("scale TTA", averaged)):
            print(f"{shift:20s} {label:9s} " + accuracy_line(members, labels, calibration), flush=True)

if __name__ == "__main__":
    main()
