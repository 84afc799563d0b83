"""Baselines the models must beat, evaluated exactly like them.

- ``baseline_colour``: a logistic regression on six numbers per tile (CIELAB mean and standard
  deviation). What colour alone buys on LC25000.
- ``baseline_copy_lookup``: each test tile takes the class of its best-matching training tile (the
  family detector's matcher, over every class). A pure memoriser: it scores high exactly where test
  tiles have copies in train, which is what a leaky split rewards.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lungfake.classes import CLASS_NAMES
from lungfake.data.splits import SplitRow, rows_on
from lungfake.data.tiles import read_split_pixels
from lungfake.evaluation.colour import lab_statistics

log = logging.getLogger(__name__)
COLOUR_SIZE = 112  # colour statistics barely change with size; a quarter of the pixels is 4x faster
BASELINES = {
    "baseline_colour": "Colour statistics (6 numbers)",
    "baseline_copy_lookup": "Copy lookup (memoriser)",
}


def _labels(rows: list[SplitRow]) -> np.ndarray:
    return np.array([CLASS_NAMES.index(r.label) for r in rows])


def colour_baseline_probabilities(root: Path, rows: list[SplitRow]) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities of the test tiles, true labels) from the colour baseline fitted on train."""
    from lungfake.evaluation.colour import colour_baseline

    train, test = rows_on(rows, "train"), rows_on(rows, "test")
    features = {side: lab_statistics(read_split_pixels(root, part, COLOUR_SIZE)) for side, part in (("train", train), ("test", test))}
    model = colour_baseline().fit(features["train"], _labels(train))
    probabilities = np.zeros((len(test), len(CLASS_NAMES)))
    probabilities[:, model.classes_] = model.predict_proba(features["test"])
    return probabilities, _labels(test)


def copy_lookup_probabilities(root: Path, rows: list[SplitRow], keys: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-hot probabilities: the class of each test tile's best-matching train tile (any class).
    Without a verified match a tile takes the class of the candidate with the most consistent keypoints
    (chance agreement), and with none at all that of its most similar train tile by visual words.
    keys: keypoints by tile path, filled in here for tiles it lacks (so both protocols share them)."""
    from lungfake.data.families import MATCH_THRESHOLD, best_matches, keypoints_of_all

    keys = {} if keys is None else keys
    train, test = rows_on(rows, "train"), rows_on(rows, "test")
    missing = [r for r in train + test if r.path not in keys]
    if missing:
        found = keypoints_of_all(read_split_pixels(root, missing), lambda d, t: log.info("keypoints %d/%d", d, t))
        keys.update({r.path: k for r, k in zip(missing, found)})
    keys_train, keys_test = [keys[r.path] for r in train], [keys[r.path] for r in test]
    # best_matches names each query's best-scoring candidate (verified or not; else its nearest by visual words).
    scores, best = best_matches(keys_test, keys_train)
    predicted = _labels(train)[best]
    log.info("copy lookup: %d of %d test tiles have a verified match in train, %d some chance agreement",
             int((scores >= MATCH_THRESHOLD).sum()), len(test), int(((scores > 0) & (scores < MATCH_THRESHOLD)).sum()))
    return np.eye(len(CLASS_NAMES))[predicted], _labels(test)
