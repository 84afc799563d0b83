"""The served files (float16 LiteRT, model_file.py) against the trained Keras models they were exported from.

For every registered model: the largest difference of calibrated probabilities and the accuracy of both, on every
grouped validation and test tile, and the sizes of both files. Needs each model's trained Keras model where
training keeps it (training.trained_model_path; docs/models.md#trained-keras-models).

    python benchmarks/served_files.py [--data-dir ../shared/data/lc25000_lung] [--models all]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lungfake.data.tiles import resolve_data_root
from lungfake.evaluation.evaluator import Evaluator, predict_probabilities
from lungfake.serving.calibration import apply_temperature
from lungfake.serving.inference import LoadedModel, select_entries
from lungfake.training.trainer import verified_trained_model


def keras_probabilities(path, pixels: np.ndarray) -> np.ndarray:
    import keras

    from lungfake.training.architectures import register_custom_layers

    register_custom_layers()
    model = keras.models.load_model(path, compile=False, safe_mode=True)
    return np.concatenate([np.asarray(model(pixels[s : s + 64], training=False)) for s in range(0, len(pixels), 64)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", default="all")
    args = parser.parse_args()
    evaluator = Evaluator(resolve_data_root(args.data_dir))
    for entry in select_entries(args.models):
        trained = verified_trained_model(entry.arch, entry.split)
        served = LoadedModel.load(entry)
        print(f"{entry.display_name}: served file {served_size(entry):.1f} MB, trained Keras file {trained.stat().st_size / 1e6:.1f} MB")
        for side in ("val", "test"):
            pixels = evaluator.pixels("grouped", side, entry.input_size).astype(np.float32)
            labels = evaluator.labels("grouped", side, entry.class_names)
            started = time.perf_counter()
            lite = apply_temperature(predict_probabilities(served, pixels), entry.temperature)
            lite_seconds = time.perf_counter() - started
            started = time.perf_counter()
            full = apply_temperature(keras_probabilities(trained, pixels), entry.temperature)
            keras_seconds = time.perf_counter() - started
            print(f"  {side} ({len(pixels)} tiles): max |served - Keras| {np.abs(lite - full).max():.2e}, "
                  f"accuracy served {(lite.argmax(1) == labels).mean():.4f} Keras {(full.argmax(1) == labels).mean():.4f}, "
                  f"same class on {(lite.argmax(1) == full.argmax(1)).sum()}/{len(pixels)}; "
                  f"{lite_seconds:.1f} s served, {keras_seconds:.1f} s Keras", flush=True)


def served_size(entry) -> float:
    from lungfake.serving.store import WeightsStore

    return WeightsStore.resolve().file(entry.file).stat().st_size / 1e6


if __name__ == "__main__":
    main()
