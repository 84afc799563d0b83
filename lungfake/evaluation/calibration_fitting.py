"""Calibration fitted on validation tiles: a temperature per model and for the ensemble, member weights, and the
confidence below which to warn (serving.calibration applies them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from lungfake.serving.calibration import apply_temperature

TARGET_ACCURACY = 0.99  # the warning threshold keeps val predictions above it at least this accurate
TARGET_ECE = 0.03  # the model issue's target for every model after calibration


def fit_member_weights(member_probabilities, y_true: np.ndarray) -> np.ndarray:
    """Non-negative member weights summing to 1 that minimise the log-loss of the weighted mean on val tiles (stacking
    by log-loss): a member that adds only errors gets little weight, so the ensemble is not held below its best."""
    members, y_true = np.asarray(member_probabilities, np.float64), np.asarray(y_true)
    picked = members[:, np.arange(len(y_true)), y_true]  # (members, tiles): each member's probability of the truth

    def loss(logits: np.ndarray) -> float:
        weights = np.exp(logits - logits.max())
        return float(-np.mean(np.log(np.clip(weights @ picked / weights.sum(), 1e-12, 1.0))))

    result = minimize(loss, np.zeros(len(members)), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    weights = np.exp(result.x - result.x.max())
    return weights / weights.sum()


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes (Guo et al. 2017), each
    tile weighing the same unless weights say otherwise."""
    y_true = np.asarray(y_true)

    def nll(log_t: float) -> float:
        calibrated = apply_temperature(probabilities, float(np.exp(log_t)))
        return float(-np.average(np.log(np.clip(calibrated[np.arange(len(y_true)), y_true], 1e-12, 1.0)), weights=weights))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True)
class ConfidenceThreshold:
    threshold: float  # warn below this calibrated confidence
    val_coverage: float  # share of val tiles at or above it
    val_accuracy: float  # accuracy of those tiles

    def to_json(self) -> dict:
        return {"threshold": round(self.threshold, 4), "val_coverage": round(self.val_coverage, 4),
                "val_accuracy": round(self.val_accuracy, 4), "target_accuracy": TARGET_ACCURACY}


def choose_threshold(probabilities: np.ndarray, y_true: np.ndarray, target: float = TARGET_ACCURACY) -> ConfidenceThreshold:
    """The lowest confidence threshold at which the val predictions at or above it are at least target accurate."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    order = np.argsort(-confidence)
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    meets = np.flatnonzero(running >= target)
    if not len(meets):
        return ConfidenceThreshold(1.0, 0.0, float("nan"))
    last = meets[-1]
    return ConfidenceThreshold(float(confidence[order][last]), float((last + 1) / len(order)), float(running[last]))


def ece_interval_text(metrics) -> str:
    """What a metrics file's expected calibration error means (an EvaluationMetrics), with its interval over test
    families where it has one."""
    ece, interval = metrics.expected_calibration_error, metrics.expected_calibration_error_ci95
    text = (f"Expected calibration error on the test tiles: {ece:.3f} (target at most {TARGET_ECE}): the mean gap between "
            "confidence and accuracy, over bins of confidence.")
    if interval:
        text += (f" 95% interval over test families {interval[0]:.3f}-{interval[1]:.3f}: a few families decide it, so an ECE "
                 "inside the interval of another is no evidence that either is better calibrated.")
    return text
