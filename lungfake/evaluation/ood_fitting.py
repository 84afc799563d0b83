"""Fitting the out-of-distribution reference on grouped training tiles and registering it."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lungfake.data.splits import SplitRow, load_split, rows_on
from lungfake.data.tiles import read_split_pixels
from lungfake.errors import RegistryError
from lungfake.serving.inference import LoadedModel
from lungfake.serving.ood import DEFAULT_QUANTILE, FEATURE_COMPONENTS, TISSUE_QUANTILE, GaussianReference, OodReference, stain_statistics
from lungfake.serving.registry import OodEntry, load_registry, load_scale_normalisation, register_ood, sha256_of
from lungfake.serving.scale import as_scored  # the screen is fitted on what it will judge
from lungfake.serving.store import WeightsStore

REFERENCE_FILE = "ood_reference.npz"
BATCH = 64
log = logging.getLogger(__name__)


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


def tiles_and_features(root: Path, rows: list[SplitRow], model: LoadedModel,
                       scale=None) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """The tiles of split rows, what the scorer sees of them, and the model's pooled features of that."""
    images = list(read_split_pixels(root, rows))
    seen = as_scored(images, scale)
    features = [model.features_of(seen[s : s + BATCH]) for s in range(0, len(seen), BATCH)]
    return images, seen, np.concatenate(features)


def as_other_labs_show_them(images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Each tile once more, as a random other lab might stain, scan and magnify it (robustness.another_lab),
    restained around these tiles' own colour statistics."""
    from lungfake.evaluation.colour import ColourTarget
    from lungfake.evaluation.robustness import another_lab

    rng = np.random.default_rng(seed)
    own_colour = ColourTarget.of(np.stack(images[:: max(1, len(images) // 500)]))
    log.info("drawing %d tiles as other labs might show them", len(images))
    return [another_lab(rgb, rng, own_colour) for rgb in images]


def fit_and_register(root: Path, feature_model: str = "mobilenetv2", train_sample: int = 3000,
                     quantile: float = DEFAULT_QUANTILE, folder: Path | None = None, split_name: str = "grouped") -> OodReference:
    entry = load_registry(folder).get(feature_model)
    if entry is None:
        raise RegistryError(f"No {feature_model} in the registry to read features from; train it first.")
    model = LoadedModel.load(entry, folder)
    store = WeightsStore.resolve(folder)
    rows = load_split(store.split_csv(split_name))
    train_rows, val_rows = stratified_sample(rows_on(rows, "train"), train_sample), rows_on(rows, "val")
    log.info("fitting on %d train tiles, limits from %d val tiles", len(train_rows), len(val_rows))
    scale = load_scale_normalisation(folder)
    train_images, train_seen, train_features = tiles_and_features(root, train_rows, model, scale)
    val_images, val_seen, val_features = tiles_and_features(root, val_rows, model, scale)
    varied_train = as_scored(as_other_labs_show_them(train_images), scale)
    varied_val = as_scored(as_other_labs_show_them(val_images, seed=1), scale)
    reference = fit_reference(train_seen, train_features, val_seen, val_features, feature_model, quantile,
                              varied_train, varied_val)
    target = store.file(REFERENCE_FILE)
    target.write_bytes(reference.to_bytes())
    register_ood(OodEntry(REFERENCE_FILE, sha256_of(target), feature_model, quantile), folder)
    return reference


def fit_reference(train_rgb: list[np.ndarray], train_features: np.ndarray, val_rgb: list[np.ndarray], val_features: np.ndarray,
                  feature_model: str, quantile: float = DEFAULT_QUANTILE, varied_train_rgb: list[np.ndarray] | None = None,
                  varied_val_rgb: list[np.ndarray] | None = None, tissue_quantile: float = TISSUE_QUANTILE) -> OodReference:
    """Fit the checks on training tiles; their limits are quantiles of validation-tile distances. The tissue
    check is fitted on training tiles as other labs might show them (and its limit on such val tiles);
    without those, stain differences count as out of distribution, as before domain shift was told apart."""
    train_stats = np.stack([stain_statistics(x) for x in train_rgb])
    val_stats = np.stack([stain_statistics(x) for x in val_rgb])
    tissue = None
    if varied_train_rgb is not None and varied_val_rgb is not None:
        varied_train = np.concatenate([train_stats, np.stack([stain_statistics(x) for x in varied_train_rgb])])
        varied_val = np.concatenate([val_stats, np.stack([stain_statistics(x) for x in varied_val_rgb])])
        tissue = GaussianReference.fit(varied_train, varied_val, tissue_quantile)
    return OodReference(
        GaussianReference.fit(train_stats, val_stats, quantile),
        GaussianReference.fit(train_features, val_features, quantile, FEATURE_COMPONENTS),
        feature_model, quantile, tissue,
    )
