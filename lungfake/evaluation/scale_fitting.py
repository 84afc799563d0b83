"""Fitting the scale setting (serving.scale) on grouped training tiles: python -m lungfake scale-fit."""
from __future__ import annotations

import logging

import numpy as np

from lungfake.data.splits import load_split, rows_on
from lungfake.data.tiles import read_split_pixels
from lungfake.errors import DatasetError
from lungfake.serving.registry import update_scale_normalisation
from lungfake.serving.scale import DEFAULT_FACTOR_RANGE, DEFAULT_POWER, ScaleNormalisation, at_reference_side, nuclear_size
from lungfake.serving.store import WeightsStore

log = logging.getLogger(__name__)


def fit_reference(tiles) -> float:
    """LC25000's median nuclear size over the given training tiles (tiles without nuclei left out)."""
    sizes = np.array([nuclear_size(at_reference_side(t)) for t in tiles])
    if not np.isfinite(sizes).any():
        raise DatasetError(f"No nuclei were found in any of the {len(sizes)} tiles given; are they H&E tiles?")
    return float(np.nanmedian(sizes))


def fit_and_register(root, folder=None, every: int = 20, power: float = DEFAULT_POWER,
                     factor_range: tuple[float, float] = DEFAULT_FACTOR_RANGE) -> ScaleNormalisation:
    """Fit the reference on every `every`-th grouped training tile and record the setting in the registry."""
    rows = rows_on(load_split(WeightsStore.resolve(folder).split_csv("grouped")), "train")[::every]
    log.info("measuring nuclear size on %d grouped training tiles", len(rows))
    scale = ScaleNormalisation(fit_reference(read_split_pixels(root, rows)), power, *factor_range)
    update_scale_normalisation(scale, folder)
    return scale
