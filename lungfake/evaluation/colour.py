"""Tile colour: its CIELAB statistics, matching a tile to target statistics, and what colour alone predicts.

LC25000's three lung classes were photographed so that each has its own colour; a classifier can score
well on it without looking at tissue. These tools measure that: the colour-statistics baseline, and
colour-neutral accuracy (every test tile's colour statistics matched to the training set's, so that only
the tissue differs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import lab2rgb, rgb2lab
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MIN_STD = 1e-3


def lab_statistics(images: np.ndarray) -> np.ndarray:
    """(n, 6): each tile's CIELAB mean and standard deviation per channel (L, a, b)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    lab = np.stack([rgb2lab(rgb) for rgb in images]).reshape(len(images), -1, 3)
    return np.concatenate([lab.mean(axis=1), lab.std(axis=1)], axis=1).astype(np.float32)


@dataclass(frozen=True)
class ColourTarget:
    """Colour statistics to match tiles to: CIELAB mean and standard deviation per channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @staticmethod
    def of(images: np.ndarray) -> ColourTarget:
        """The average statistics of a set of tiles (e.g. the training set's)."""
        stats = lab_statistics(images).mean(axis=0)
        return ColourTarget(tuple(map(float, stats[:3])), tuple(map(float, stats[3:])))

    @staticmethod
    def of_many(images: list[np.ndarray]) -> ColourTarget:
        """The average statistics of tiles of different sizes."""
        stats = np.concatenate([lab_statistics(rgb) for rgb in images]).mean(axis=0)
        return ColourTarget(tuple(map(float, stats[:3])), tuple(map(float, stats[3:])))

    @staticmethod
    def from_json(payload: dict) -> ColourTarget:
        return ColourTarget(tuple(payload["lab_mean"]), tuple(payload["lab_std"]))

    def to_json(self) -> dict:
        return {"lab_mean": list(self.mean), "lab_std": list(self.std)}


def match_colour(rgb: np.ndarray, target: ColourTarget) -> np.ndarray:
    """The tile with each CIELAB channel shifted and scaled to the target's mean and standard deviation
    (Reinhard et al. 2001): same tissue, the target's colour."""
    lab = rgb2lab(rgb)
    flat = lab.reshape(-1, 3)
    mean, std = flat.mean(axis=0), np.maximum(flat.std(axis=0), MIN_STD)
    matched = (lab - mean) / std * np.asarray(target.std) + np.asarray(target.mean)
    matched[..., 0] = np.clip(matched[..., 0], 0, 100)
    return np.clip(lab2rgb(matched) * 255 + 0.5, 0, 255).astype(np.uint8)


def match_all(images: np.ndarray, target: ColourTarget) -> np.ndarray:
    return np.stack([match_colour(rgb, target) for rgb in images]) if len(images) else np.asarray(images)


def colour_baseline():
    """The six-number colour classifier: standardised CIELAB statistics, logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
