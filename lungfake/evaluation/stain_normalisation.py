"""Stain normalisation as labs apply it before sharing or scoring tiles, to test the screen against it (issue 52) and
to show the screen such tissue when it is fitted: Reinhard et al. 2001 (each CIELAB channel's mean and spread matched
to a target's: evaluation.colour.match_colour) and Macenko et al. 2009 (the tile's two stain vectors found in optical
density, its stain concentrations rescaled to a target's and recombined with the target's stain vectors)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungfake.evaluation.colour import ColourTarget, match_colour

LIGHT = 255.0
OD_THRESHOLD = 0.15  # optical density below which a pixel is background (Macenko's beta)
ANGLE_PERCENTILE = 1.0  # Macenko's alpha: robust extremes of the stain angles
CONCENTRATION_PERCENTILE = 99.0


def reinhard(rgb: np.ndarray, target: ColourTarget) -> np.ndarray:
    return match_colour(rgb, target)


def _optical_density(rgb: np.ndarray) -> np.ndarray:
    return -np.log((rgb.reshape(-1, 3).astype(np.float64) + 1.0) / LIGHT)


@dataclass(frozen=True)
class MacenkoTarget:
    """A reference's stain vectors (rows: haematoxylin, eosin, in optical density) and its robust maximum
    concentration of each stain."""
    stains: np.ndarray
    max_concentrations: np.ndarray

    @classmethod
    def of(cls, images) -> MacenkoTarget:
        """The reference of a set of tiles: their pixels pooled (a sample of each)."""
        rng = np.random.default_rng(0)
        pooled = np.concatenate([_optical_density(rgb)[rng.choice(rgb.shape[0] * rgb.shape[1], 2000)] for rgb in images])
        stains = stain_vectors(pooled)
        return cls(stains, _max_concentrations(pooled, stains))


def stain_vectors(density: np.ndarray) -> np.ndarray:
    """(2, 3): the haematoxylin and eosin directions of these optical densities (Macenko's plane and angles)."""
    tissue = density[(density > OD_THRESHOLD).all(axis=1)]
    if len(tissue) < 10:
        raise ValueError("too little stained tissue to find stain vectors")
    _, vectors = np.linalg.eigh(np.cov(tissue.T))
    plane = vectors[:, 1:3]  # the two largest eigenvalues' directions
    projected = tissue @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    first = plane @ np.array([np.cos(low), np.sin(low)])
    second = plane @ np.array([np.cos(high), np.sin(high)])
    pair = np.stack([first, second])
    pair *= np.sign(pair.sum(axis=1, keepdims=True))  # optical densities are positive
    # haematoxylin absorbs red most (its first component is the larger)
    return pair if pair[0, 0] >= pair[1, 0] else pair[::-1]


def _max_concentrations(density: np.ndarray, stains: np.ndarray) -> np.ndarray:
    concentrations = np.linalg.lstsq(stains.T, density.T, rcond=None)[0]
    return np.percentile(concentrations, CONCENTRATION_PERCENTILE, axis=1)


def macenko(rgb: np.ndarray, target: MacenkoTarget) -> np.ndarray:
    """The tile's stains rescaled to the target's concentrations and recombined with the target's stain vectors; a tile
    with too little stain to find its vectors is returned as it is."""
    density = _optical_density(rgb)
    try:
        stains = stain_vectors(density)
    except ValueError:
        return rgb
    concentrations = np.linalg.lstsq(stains.T, density.T, rcond=None)[0]
    scale = target.max_concentrations / np.maximum(np.percentile(concentrations, CONCENTRATION_PERCENTILE, axis=1), 1e-6)
    normalised = LIGHT * np.exp(-(target.stains.T @ (concentrations * scale[:, None])))
    return np.clip(normalised.T.reshape(rgb.shape) - 1.0 + 0.5, 0, 255).astype(np.uint8)
