"""How well can any temperature calibrate the served models for families it has not seen?

`evaluate` fits each model's temperature on all validation tiles and reports ECE on the test tiles. This
measures, on validation tiles only, what that procedure achieves for new families: it splits the validation
families in two at random, fits a temperature on one half (by negative log-likelihood, as `evaluate` does,
and, for comparison, by the least ECE on that half) and measures ECE on the other half; repeated over
random halvings. No test tile is read.

Usage: python benchmarks/calibration_crossfit.py [--data-dir DIR] [--halvings 40]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.2), np.log(3.0), 80))


def least_ece_temperature(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    from lungfake.calibration import apply_temperature
    from lungfake.evaluation import expected_calibration_error

    errors = [expected_calibration_error(y_true, apply_temperature(probabilities, t)) for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(errors))])


def family_weighted_temperature(probabilities: np.ndarray, y_true: np.ndarray, families: np.ndarray) -> float:
    """The NLL temperature with every family weighing the same (validation families hold 2-207 tiles)."""
    from lungfake.calibration import fit_temperature

    _, index, counts = np.unique(families, return_inverse=True, return_counts=True)
    return fit_temperature(probabilities, y_true, weights=1.0 / counts[index])


def vector_scaled(fit_p: np.ndarray, fit_y: np.ndarray, held_p: np.ndarray) -> np.ndarray:
    """Held-out probabilities after a temperature and a bias per class, fitted by NLL (vector scaling's
    cheaper cousin, Guo et al. 2017): can it correct a class the model over- or under-calls?"""
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    def logits(p, params):
        return np.log(np.clip(p, 1e-12, 1.0)) / np.exp(params[0]) + params[1:]

    def nll(params):
        return float(-log_softmax(logits(fit_p, params), axis=1)[np.arange(len(fit_y)), fit_y].mean())

    params = minimize(nll, np.zeros(1 + fit_p.shape[1]), method="L-BFGS-B").x
    return softmax(logits(held_p, params), axis=1)


def crossfit(probabilities: np.ndarray, y_true: np.ndarray, families: np.ndarray, halvings: int) -> dict[str, list[float]]:
    """ECE on held-out halves of the families: raw, at the NLL temperature, at the least-ECE temperature, at the
    family-weighted NLL temperature, and after a temperature with a bias per class."""
    from lungfake.calibration import apply_temperature, fit_temperature
    from lungfake.evaluation import expected_calibration_error

    rng = np.random.default_rng(0)
    unique = np.unique(families)
    found: dict[str, list[float]] = {"uncalibrated": [], "NLL temperature": [], "least-ECE temperature": [],
                                     "family-weighted NLL temperature": [], "temperature and class biases": []}
    for _ in range(halvings):
        fit = np.isin(families, rng.choice(unique, len(unique) // 2, replace=False))
        held_p, held_y = probabilities[~fit], y_true[~fit]
        found["uncalibrated"].append(expected_calibration_error(held_y, held_p))
        for name, temperature in (("NLL temperature", fit_temperature(probabilities[fit], y_true[fit])),
                                  ("least-ECE temperature", least_ece_temperature(probabilities[fit], y_true[fit]))):
            found[name].append(expected_calibration_error(held_y, apply_temperature(held_p, temperature)))
        weighted = family_weighted_temperature(probabilities[fit], y_true[fit], families[fit])
        found["family-weighted NLL temperature"].append(expected_calibration_error(held_y, apply_temperature(held_p, weighted)))
        found["temperature and class biases"].append(
            expected_calibration_error(held_y, vector_scaled(probabilities[fit], y_true[fit], held_p)))
    return found


def main() -> int:
    from lungfake.calibration import TARGET_ECE, apply_temperature
    from lungfake.data import resolve_data_root
    from lungfake.evaluation import Evaluator, expected_calibration_error, predict_probabilities
    from lungfake.registry import load_model, load_registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--halvings", type=int, default=40)
    args = parser.parse_args()
    evaluator = Evaluator(resolve_data_root(args.data_dir))
    families = evaluator.families("grouped", "val")
    print(f"validation: {len(families)} tiles in {len(np.unique(families))} families; {args.halvings} random halvings; "
          f"ECE on the held-out half, mean (2.5th-97.5th percentile); target {TARGET_ECE}")
    for arch, entry in load_registry().items():
        y_true = evaluator.labels("grouped", "val", entry.class_names)
        raw = predict_probabilities(load_model(entry), evaluator.pixels("grouped", "val", entry.input_size))
        served = expected_calibration_error(y_true, apply_temperature(raw, entry.temperature))
        cells = [f"{name} {np.mean(v):.3f} ({np.percentile(v, 2.5):.3f}-{np.percentile(v, 97.5):.3f})"
                 for name, v in crossfit(raw, y_true, families, args.halvings).items()]
        print(f"{entry.display_name or arch}: on all val tiles at the served temperature {entry.temperature:.3f}: "
              f"{served:.3f}; held-out halves: " + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
