"""Fitting the out-of-distribution reference on grouped training tiles and registering it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .images import read_image_file
from .inference import LoadedModel
from .ood import DEFAULT_QUANTILE, OodReference, fit_reference
from .registry import OodEntry, load_registry, register_ood, sha256_of, weights_dir
from .splits import SplitRow, load_split, rows_in

REFERENCE_FILE = "ood_reference.npz"
BATCH = 64


def stratified_sample(rows: list[SplitRow], count: int, seed: int = 0) -> list[SplitRow]:
    """About count rows with every class in its own proportion, chosen reproducibly."""
    rng = np.random.default_rng(seed)
    if count >= len(rows):
        return rows
    chosen = []
    for label in sorted({r.label for r in rows}):
        members = [r for r in rows if r.label == label]
        take = round(count * len(members) / len(rows))
        chosen += [members[i] for i in sorted(rng.choice(len(members), take, replace=False))]
    return chosen


def tiles_and_features(root: Path, rows: list[SplitRow], model: LoadedModel) -> tuple[list[np.ndarray], np.ndarray]:
    """Decoded tiles (through the same path as uploads) and the model's pooled features."""
    images = [read_image_file(root / r.path) for r in rows]
    features = [model.predict_with_features(images[s : s + BATCH])[1] for s in range(0, len(images), BATCH)]
    return images, np.concatenate(features)


def fit_and_register(root: Path, feature_model: str = "mobilenetv2", train_sample: int = 3000,
                     quantile: float = DEFAULT_QUANTILE, folder: Path | None = None, split_name: str = "grouped") -> OodReference:
    entry = load_registry(folder).get(feature_model)
    if entry is None:
        raise DatasetError(f"No {feature_model} in the registry to read features from; train it first.")
    model = LoadedModel.load(entry, folder)
    rows = load_split(weights_dir(folder) / "splits" / f"{split_name}.csv")
    train_rows, val_rows = stratified_sample(rows_in(rows, "train"), train_sample), rows_in(rows, "val")
    print(f"fitting on {len(train_rows)} train tiles, limits from {len(val_rows)} val tiles", file=sys.stderr)
    train_images, train_features = tiles_and_features(root, train_rows, model)
    val_images, val_features = tiles_and_features(root, val_rows, model)
    reference = fit_reference(train_images, train_features, val_images, val_features, feature_model, quantile)
    target = weights_dir(folder) / REFERENCE_FILE
    target.write_bytes(reference.to_bytes())
    register_ood(OodEntry(REFERENCE_FILE, sha256_of(target), feature_model, quantile), folder)
    return reference
