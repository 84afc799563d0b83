"""Calibration as every score applies it: a model's temperature, and the ensemble's weighted mean and temperature (fitted on
validation tiles by evaluation.calibration_fitting)."""
from __future__ import annotations

import numpy as np


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log-probabilities divided by the temperature (1: unchanged)."""
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def ensemble_probabilities(member_probabilities, temperature: float = 1.0, weights=None) -> np.ndarray:
    """The ensemble's probabilities: the weighted mean of its members' calibrated probabilities (equal weights unless
    given; calibration_fitting.fit_member_weights fits them on val), then its own temperature (fitted on val like a model's: a mean of
    calibrated models is less confident than each, Lakshminarayanan 2017)."""
    members = np.asarray(member_probabilities, np.float64)
    weights = np.full(len(members), 1.0 / len(members)) if weights is None else np.asarray(weights, np.float64)
    return apply_temperature(np.tensordot(weights / weights.sum(), members, axes=1), temperature)


