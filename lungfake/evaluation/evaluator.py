"""Held-out metrics of a model on a split's test tiles, written as the JSON the dashboard reads."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from lungfake.classes import is_cancer
from lungfake.errors import MetricsError
from lungfake.evaluation.metrics import EvaluationMetrics

log = logging.getLogger(__name__)

N_BOOTSTRAP = 1000
ECE_BINS = 15
ROC_POINTS = 101


def _cluster_bootstrap(y_true, y_pred, groups, metric, seed: int = 0) -> list[float]:
    """95% interval of a metric, resampling whole families: copies of one tile are not independent."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    values = []
    for _ in range(N_BOOTSTRAP):
        chosen = rng.integers(0, len(unique), len(unique))
        idx = np.concatenate([members[g] for g in chosen])
        values.append(metric(y_true[idx], y_pred[idx]))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_curve(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict:
    """Accuracy against confidence of the predicted class (scikit-learn's calibration_curve), for the diagram."""
    from sklearn.calibration import calibration_curve

    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y_true).astype(int)
    if correct.min() == correct.max():
        return {"confidence": [float(confidence.mean())], "accuracy": [float(correct.mean())]}
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=bins, strategy="quantile")
    return {"confidence": mean_confidence.round(4).tolist(), "accuracy": accuracy.round(4).tolist()}


def _roc(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> tuple[dict, dict]:
    auc, curves = {}, {}
    grid = np.linspace(0.0, 1.0, ROC_POINTS)
    for k, name in enumerate(class_names):
        positive = (y_true == k).astype(int)
        if positive.min() == positive.max():
            continue
        auc[name] = float(roc_auc_score(positive, probabilities[:, k]))
        fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
        curves[name] = {"fpr": grid.round(4).tolist(), "tpr": np.interp(grid, fpr, tpr).round(4).tolist()}
    if auc:
        auc["macro"] = float(np.mean(list(auc.values())))
    return auc, curves


def _binary(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    cancer = np.array([is_cancer(n) for n in class_names])
    truth, called = cancer[y_true], cancer[y_pred]
    positives, negatives = truth.sum(), (~truth).sum()
    return {
        "binary_accuracy": float((truth == called).mean()),
        "binary_sensitivity": float((truth & called).sum() / positives) if positives else None,
        "binary_specificity": float((~truth & ~called).sum() / negatives) if negatives else None,
    }


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str], groups: np.ndarray) -> dict:
    """Every metric the dashboard shows, for integer labels in class_names order."""
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(class_names)))

    def macro_f1(t, p):
        return f1_score(t, p, labels=labels, average="macro", zero_division=0)

    auc, curves = _roc(y_true, probabilities, class_names)
    return {
        "n_test": int(len(y_true)),
        "n_test_families": int(len(np.unique(groups))),
        "class_names": list(class_names),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": _cluster_bootstrap(y_true, y_pred, groups, accuracy_score),
        "macro_f1": float(macro_f1(y_true, y_pred)),
        "macro_f1_ci95": _cluster_bootstrap(y_true, y_pred, groups, macro_f1),
        "classification_report": classification_report(
            y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
        ),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        **_binary(y_true, y_pred, class_names),
        "roc_auc": auc,
        "roc_curves": curves,
        "expected_calibration_error": expected_calibration_error(y_true, probabilities),
        # ~65 test families: which families land in the test set moves ECE as much as calibration does.
        "expected_calibration_error_ci95": _cluster_bootstrap(y_true, probabilities, groups, expected_calibration_error),
        "reliability": reliability_curve(y_true, probabilities),
    }


def predict_probabilities(model, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Uncalibrated probabilities of a served model (inference.LoadedModel) for inputs already at its size."""
    return np.concatenate(
        [model.forward(pixels[s : s + batch_size])[1] for s in range(0, len(pixels), batch_size)]
    ) if len(pixels) else np.zeros((0, 0))


def resized_to(tiles: np.ndarray, size: int) -> np.ndarray:
    """224 px tiles at a model's input size with OpenCV's area resize, as benchmarks/explanations.py and scale_tta.py
    measured them; evaluate and the scorer resize with images.to_model_input (PIL bilinear) instead."""
    import cv2

    return np.stack([cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in tiles])


def with_intervals(y_true, correct_or_pred, groups, metric=accuracy_score) -> dict:
    """A metric of predictions and its 95% interval over families, as {value, ci95}."""
    interval = _cluster_bootstrap(np.asarray(y_true), np.asarray(correct_or_pred), groups, metric)
    return {"value": float(metric(y_true, correct_or_pred)), "ci95": interval}


def evaluate_all(root, arch: str = "all", protocol: str = "all", store=None, external_dir=None) -> list:
    """Write weights/metrics/<name>_<protocol>.json for every model available here and for the baselines."""
    return Evaluator(root, store, external_dir).run(arch, protocol)


def _plain(value):
    """JSON-ready: numpy scalars and arrays as Python numbers and lists, tuples as lists (as a file reads back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_all_metrics(store=None) -> dict[tuple[str, str], EvaluationMetrics]:
    """Every committed metrics file, keyed by (arch, protocol)."""
    from lungfake.serving.store import WeightsStore

    found = {}
    for path in WeightsStore.resolve(store).all_metrics():
        metrics = EvaluationMetrics.read(path)
        found[(metrics.arch, metrics.protocol)] = metrics
    return found


class Evaluator:
    """One evaluation run: every model and baseline on the test tiles of both split protocols."""

    ROBUSTNESS_EVERY = 3  # every 3rd grouped test tile under each shift

    def __init__(self, root, store=None, external_dir=None):
        from lungfake.serving.store import WeightsStore

        self.root, self.store = root, WeightsStore.resolve(store)
        self.external_dir = external_dir
        self._cache: dict = {}

    def rows(self, protocol: str):
        from lungfake.data.splits import load_split

        return self._cached(("rows", protocol), lambda: load_split(self.store.split_csv(protocol)))

    def split_sha(self, protocol: str) -> str:
        from lungfake.data.splits import split_sha256

        return self._cached(("sha", protocol), lambda: split_sha256(self.store.split_csv(protocol)))

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def pixels(self, protocol: str, side: str, size: int) -> np.ndarray:
        from lungfake.data.splits import rows_on
        from lungfake.data.tiles import read_split_pixels

        return self._cached(("px", protocol, side, size), lambda: read_split_pixels(self.root, rows_on(self.rows(protocol), side), size))

    def scale(self):
        """The registry's scale setting (scale.ScaleNormalisation), or None: tiles are then scored as they are."""
        from lungfake.serving.registry import load_scale_normalisation

        return self._cached("scale", lambda: load_scale_normalisation(self.store.root))

    def seen(self, key, tiles: np.ndarray) -> np.ndarray:
        """What the scorer's models see of 224 px tiles (scale.py's views), computed once per key."""
        from lungfake.serving.scale import as_scored

        return self._cached(("seen", key), lambda: np.stack(as_scored(tiles, self.scale())) if len(tiles) else tiles)

    def model_inputs(self, key, tiles: np.ndarray, size: int) -> np.ndarray:
        """Those views at a model's input size, resized as the scorer resizes them (uint8, computed once per key)."""
        from lungfake.serving.images import to_model_input

        return self._cached(("inputs", key, size), lambda: np.stack(
            [to_model_input(t, size).astype(np.uint8) for t in self.seen(key, tiles)]) if len(tiles) else tiles)

    def side_inputs(self, protocol: str, side: str, size: int) -> np.ndarray:
        """A split side's tiles as the scorer's models see them, at the given input size."""
        return self.model_inputs((protocol, side), self.pixels(protocol, side, 224), size)

    def families(self, protocol: str, side: str = "test") -> np.ndarray:
        from lungfake.data.splits import rows_on

        return np.array([r.family for r in rows_on(self.rows(protocol), side)])

    def labels(self, protocol: str, side: str, class_names) -> np.ndarray:
        from lungfake.data.splits import rows_on

        return np.array([list(class_names).index(r.label) for r in rows_on(self.rows(protocol), side)])

    def training_colour(self):
        from lungfake.evaluation.colour import ColourTarget

        def make():
            pixels = self.pixels("grouped", "train", 224)
            return ColourTarget.of(pixels[:: max(1, len(pixels) // 1500)])

        return self._cached("train_colour", make)

    def shifted_test(self) -> dict[str, np.ndarray]:
        """Every 3rd grouped test tile under each named shift (224 px), computed once for all models."""
        from lungfake.evaluation.robustness import external_colour_target, named_shifts

        def make():
            tiles = self.pixels("grouped", "test", 224)[:: self.ROBUSTNESS_EVERY]
            shifts = named_shifts(external_colour_target(self.external_dir), None)
            log.info("applying %d shifts to %d test tiles", len(shifts), len(tiles))
            return {name: np.stack([shift(t) for t in tiles]) for name, shift in shifts.items()}

        return self._cached("shifted", make)

    def shifted_val(self, class_names) -> tuple[np.ndarray, np.ndarray]:
        """(tiles, labels): every 6th grouped validation tile under each named shift that does not come from external
        images, for choosing the subtype rule of tissue unlike LC25000's."""
        from lungfake.evaluation.robustness import named_shifts

        def make():
            every = 2 * self.ROBUSTNESS_EVERY
            tiles, labels = self.pixels("grouped", "val", 224)[::every], self.labels("grouped", "val", class_names)[::every]
            shifts = named_shifts(None, None)
            log.info("applying %d shifts to %d validation tiles", len(shifts), len(tiles))
            return (np.concatenate([np.stack([shift(t) for t in tiles]) for shift in shifts.values()]),
                    np.tile(labels, len(shifts)))

        return self._cached("shifted_val", make)

    def colour_neutral_test(self) -> np.ndarray:
        from lungfake.evaluation.colour import match_all

        return self._cached("neutral", lambda: match_all(self.pixels("grouped", "test", 224), self.training_colour()))

    def run(self, arch: str = "all", protocol: str = "all") -> list:
        from lungfake.data.splits import PROTOCOLS
        from lungfake.training.architectures import ARCHITECTURES

        written, ensemble_parts = [], []
        for p in PROTOCOLS if protocol == "all" else [protocol]:
            for a in {"all": ARCHITECTURES, "models": ARCHITECTURES, "baselines": ()}.get(arch, [arch]):
                result = self.evaluate_model(a, p)
                if result is not None:
                    written.append(result[0])
                    if p == "grouped":
                        ensemble_parts.append(result[1])
            if arch in ("all", "baselines"):
                written.extend(self.evaluate_baselines(p))
        if len(ensemble_parts) > 1:
            written.append(self.evaluate_ensemble(ensemble_parts))
        if ensemble_parts:
            write_error_sprite(self.root, self.store)
        return written

    def folded_from(self, protocol: str, trained_on: str | None) -> bool:
        """Whether the committed split is the one a model was trained on with leaking val/test families folded
        into train since (kept under weights/splits/earlier/): its held-out tiles are then still unseen."""
        from lungfake.data.splits import folds_saved_split

        if not trained_on:
            return False
        earlier = self.store.earlier_split_csv(protocol, trained_on)
        folded = folds_saved_split(earlier, self.rows(protocol))
        if folded:
            log.info("the %s split was trained on as %s, before val/test leaks were folded into train", protocol, earlier.name)
        return folded

    def _model_for(self, arch: str, protocol: str):
        """(served model, its file name, sha256, entry) or None with the reason logged."""
        from dataclasses import replace

        from lungfake.serving.inference import LoadedModel
        from lungfake.serving.registry import load_registry, sha256_of
        from lungfake.training.trainer import Recipe, unregistered_served_path

        entry = load_registry(self.store.root).get(arch)
        if entry is None:
            log.warning("skipping %s/%s: %s is not in the registry (train it with --split grouped first)", arch, protocol, arch)
            return None
        history_file = self.store.history_json(arch, protocol)
        trained_on = json.loads(history_file.read_text()).get("split_sha256") if history_file.exists() else None
        if trained_on != self.split_sha(protocol) and not self.folded_from(protocol, trained_on):
            why = ("has no training history" if not history_file.exists()
                   else f"was trained on another {protocol} split than the committed one")
            log.warning("skipping %s/%s: it %s; train it (python -m lungfake train --arch %s --split %s) before evaluating",
                        arch, protocol, why, arch, protocol)
            return None
        if protocol == entry.split:
            return LoadedModel.load(entry, self.store.root), entry.file, entry.sha256, entry
        path = unregistered_served_path(arch, protocol)
        if not path.exists():
            log.warning("skipping %s/%s: no model at %s (train it with --split %s)", arch, protocol, path, protocol)
            return None
        # its own file, served at the last size its recipe trained at (not the registry's, which describes the grouped one)
        size = Recipe.from_json(json.loads(history_file.read_text())["recipe"]).last_train_size
        unregistered = replace(entry, file=path.name, sha256=sha256_of(path), input_size=size)
        return LoadedModel.from_file(unregistered, path), path.name, unregistered.sha256, unregistered

    def evaluate_model(self, arch: str, protocol: str):
        from lungfake.evaluation.calibration_fitting import choose_threshold, fit_temperature
        from lungfake.serving.calibration import apply_temperature
        from lungfake.serving.registry import update_calibration

        found = self._model_for(arch, protocol)
        if found is None:
            return None
        model, model_file, sha, entry = found
        size, names = entry.input_size, list(entry.class_names)
        raw = predict_probabilities(model, self.side_inputs(protocol, "test", size))
        y_true = self.labels(protocol, "test", names)
        extra = {}
        if protocol == entry.split:
            val_raw = predict_probabilities(model, self.side_inputs(protocol, "val", size))
            y_val = self.labels(protocol, "val", names)
            temperature = fit_temperature(val_raw, y_val)
            threshold = choose_threshold(apply_temperature(val_raw, temperature), y_val)
            update_calibration(arch, temperature, threshold.to_json(), self.store.root)
            shifted, y_shifted = self.shifted_val(names)
            extra.update(low_confidence=threshold.to_json(), _val=apply_temperature(val_raw, temperature), _y_val=y_val,
                         _val_shifted=apply_temperature(predict_probabilities(model, self.model_inputs("shifted_val", shifted, size)),
                                                        temperature),
                         _y_val_shifted=y_shifted)
        else:
            temperature = 1.0
        calibrated = apply_temperature(raw, temperature)
        metrics = compute_metrics(y_true, calibrated, names, self.families(protocol))
        metrics.update(extra, temperature=temperature, expected_calibration_error_uncalibrated=expected_calibration_error(y_true, raw),
                       reliability_uncalibrated=reliability_curve(y_true, raw), predictions=calibrated.argmax(axis=1).tolist(),
                       true_labels=y_true.tolist(),
                       confidence=calibrated.max(axis=1).round(4).tolist())
        if protocol == "grouped":
            metrics.update(self.shift_metrics(model, size, names, temperature))
        history = json.loads(self.store.history_json(arch, protocol).read_text())
        metrics.update(arch=arch, protocol=protocol, display_name=entry.display_name or arch, model_file=model_file,
                       weights_sha256=sha, input_size=size, split_sha256=self.split_sha(protocol),
                       history=history["history"], train_minutes=history.get("train_minutes"),
                       train_cpu_minutes=history.get("train_cpu_minutes"), recipe=history["recipe"],
                       trained_on_split_sha256=history.get("split_sha256"))
        path = self._write(arch, protocol, metrics, "model")
        return path, (names, calibrated, metrics)

    def shift_metrics(self, model, size: int, names: list[str], temperature: float) -> dict:
        """Colour-neutral accuracy on every grouped test tile, and accuracy under each named shift."""
        from lungfake.serving.calibration import apply_temperature

        def predict(key, tiles):
            return apply_temperature(predict_probabilities(model, self.model_inputs(key, tiles, size)), temperature)

        y_true, families = self.labels("grouped", "test", names), self.families("grouped")
        neutral = predict("neutral", self.colour_neutral_test())
        every = self.ROBUSTNESS_EVERY
        clean = predict("clean_every", self.pixels("grouped", "test", 224)[::every])
        table = {"clean": float((clean.argmax(1) == y_true[::every]).mean())}
        shifted_probabilities = {}
        for name, tiles in self.shifted_test().items():
            shifted_probabilities[name] = predict(("shifted", name), tiles)
            table[name] = float((shifted_probabilities[name].argmax(1) == y_true[::every]).mean())
        return {"colour_neutral_accuracy": with_intervals(y_true, neutral.argmax(1), families),
                "colour_neutral_predictions": neutral.argmax(1).tolist(),
                "robustness": {"tiles": int(len(clean)), "every": every, "accuracy": table},
                "_shifted": shifted_probabilities, "_neutral": neutral, "_clean_every": clean}

    def calibrate_ensemble(self, parts):
        """The ensemble's calibration (member weights, temperature, subtype rule) and warning threshold, fitted on val
        and recorded in the registry, with its figures on val; equal weights and no threshold where some member was not
        calibrated on val in this run."""
        from lungfake.evaluation.calibration_fitting import choose_threshold, fit_member_weights, fit_temperature
        from lungfake.evaluation.subtype_rule import choose_subtype_margin_for_budget, choose_subtype_rule, subtype_figures
        from lungfake.serving.calibration import ensemble_probabilities
        from lungfake.serving.registry import EnsembleCalibration, update_ensemble_calibration
        from lungfake.serving.verdict import verdicts_of

        if not all("_val" in p[2] for p in parts):
            return EnsembleCalibration(), None, {}
        members_val, y_val = [p[2]["_val"] for p in parts], parts[0][2]["_y_val"]
        archs = [p[2]["arch"] for p in parts]
        fitted = fit_member_weights(members_val, y_val)
        accuracy = {name: float((ensemble_probabilities(members_val, 1.0, w).argmax(1) == y_val).mean())
                    for name, w in (("weighted", fitted), ("equal_weights", None))}
        # the log-loss weights are kept only where they are also the more accurate on val (a tie keeps equal weights)
        weights = fitted if accuracy["weighted"] > accuracy["equal_weights"] else None
        temperature = fit_temperature(ensemble_probabilities(members_val, 1.0, weights), y_val)
        val = ensemble_probabilities(members_val, temperature, weights)
        threshold = choose_threshold(val, y_val)
        members_shifted = [p[2]["_val_shifted"] for p in parts]
        shifted_rule = choose_subtype_rule(ensemble_probabilities(members_shifted, temperature, weights), members_shifted,
                                           parts[0][2]["_y_val_shifted"])
        rule = choose_subtype_margin_for_budget(val, members_val, y_val, shifted=shifted_rule, domain_shift=self.domain_shift("val"),
                                                families=self.families("grouped", "val"))
        member_weights = dict(zip(archs, map(float, weights))) if weights is not None else None
        calibration = EnsembleCalibration(temperature, threshold.threshold, member_weights, rule)
        update_ensemble_calibration(temperature, threshold.to_json(), self.store.root, member_weights, rule)
        figures = {"val_accuracy": {**accuracy, **{a: float((m.argmax(1) == y_val).mean()) for a, m in zip(archs, members_val)}},
                   "log_loss_weights": dict(zip(archs, map(float, fitted))), "_fitted": fitted,
                   "val_subtype": subtype_figures(verdicts_of(val, members_val, self.domain_shift("val"), rule), y_val)}
        return calibration, threshold, figures

    def domain_shift(self, side: str) -> np.ndarray | None:
        """Whether the screen calls each grouped tile of this side's tissue unlike LC25000's (None without a reference)."""
        from lungfake.serving.inference import OodScreen
        from lungfake.serving.registry import Registry

        def make():
            screen = OodScreen.load([], Registry.load(self.store.root))
            if screen.reference is None:
                return None
            tiles = self.seen(("grouped", side), self.pixels("grouped", side, 224))
            verdicts = [v for s in range(0, len(tiles), 64) for v in screen.assess(list(tiles[s : s + 64]), {})]
            return np.array([bool(v.domain_shift) for v in verdicts])

        return self._cached(("domain_shift", side), make)

    def external(self) -> dict | None:
        """The served models and their ensemble on the external folder's images (measuring only), or None without one."""
        from lungfake.evaluation.external import DEFAULT_EXTERNAL_DIR, evaluate_external
        from lungfake.scoring.scoring import Scorer

        folder = Path(self.external_dir) if self.external_dir else DEFAULT_EXTERNAL_DIR
        if not (folder / "manifest.csv").is_file():
            log.warning("no external images at %s (give --external DIR): the 'other labs' figures are not updated", folder)
            return None
        return {"folder": folder.name, **evaluate_external(folder, Scorer.load("all", self.store.root))}

    def evaluate_ensemble(self, parts) -> Path:
        from lungfake.evaluation.subtype_rule import subtype_figures
        from lungfake.serving.calibration import ensemble_probabilities
        from lungfake.serving.verdict import verdicts_of

        names = parts[0][0]
        y_true, families = self.labels("grouped", "test", names), self.families("grouped")
        members = [p[2]["arch"] for p in parts]
        calibration, threshold, figures = self.calibrate_ensemble(parts)
        weights, temperature = calibration.weights_for(members), calibration.temperature

        def combine(key, name=None):
            return ensemble_probabilities([p[2][key] if name is None else p[2][key][name] for p in parts], temperature, weights)

        uncalibrated = ensemble_probabilities([p[1] for p in parts], 1.0, weights)  # the weighted mean, for ECE before
        probabilities = ensemble_probabilities([p[1] for p in parts], temperature, weights)
        metrics = compute_metrics(y_true, probabilities, names, families)
        if threshold is not None:
            metrics["low_confidence"] = threshold.to_json()
        every = self.ROBUSTNESS_EVERY
        shifted = {name: combine("_shifted", name) for name in parts[0][2]["_shifted"]}
        clean, neutral = combine("_clean_every"), combine("_neutral")
        table = {"clean": float((clean.argmax(1) == y_true[::every]).mean()),
                 **{n: float((v.argmax(1) == y_true[::every]).mean()) for n, v in shifted.items()}}
        agree = np.all([np.asarray(p[2]["predictions"]) == np.asarray(parts[0][2]["predictions"]) for p in parts], axis=0)
        test_verdicts = verdicts_of(probabilities, [p[1] for p in parts], self.domain_shift("test"), calibration.subtype_rule)
        equal = ensemble_probabilities([p[1] for p in parts])
        how = "mean" if weights is None else "weighted mean"
        metrics.update(arch="ensemble", protocol="grouped", display_name=f"Ensemble ({how} of the models)", members=members,
                       split_sha256=self.split_sha("grouped"), predictions=probabilities.argmax(1).tolist(), true_labels=y_true.tolist(),
                       confidence=probabilities.max(1).round(4).tolist(), temperature=temperature,
                       expected_calibration_error_uncalibrated=expected_calibration_error(y_true, uncalibrated),
                       reliability_uncalibrated=reliability_curve(y_true, uncalibrated),
                       colour_neutral_accuracy=with_intervals(y_true, neutral.argmax(1), families),
                       robustness={"tiles": int(len(clean)), "every": every, "accuracy": table},
                       all_members_agree={"share": float(agree.mean()),
                                          "accuracy_when_agreeing": float((probabilities.argmax(1) == y_true)[agree].mean())},
                       member_weights=calibration.member_weights,
                       subtype={"rule": calibration.subtype_rule.to_json(), "val": figures.get("val_subtype"),
                                "test": subtype_figures(test_verdicts, y_true)},
                       combination={"val_accuracy": figures.get("val_accuracy"), "log_loss_weights": figures.get("log_loss_weights"),
                                    "test_accuracy_equal_weights": float((equal.argmax(1) == y_true).mean()),
                                    "test_accuracy_log_loss_weights": float((ensemble_probabilities(
                                        [p[1] for p in parts], 1.0, figures.get("_fitted")).argmax(1) == y_true).mean())},
                       external=self.external())
        return self._write("ensemble", "grouped", metrics, "ensemble")

    def evaluate_baselines(self, protocol: str) -> list[Path]:
        from lungfake.classes import CLASS_NAMES
        from lungfake.evaluation.baselines import BASELINES, colour_baseline_probabilities, copy_lookup_probabilities

        written = []
        keys = self._cached("keypoints", dict)
        fits = {"baseline_colour": lambda: colour_baseline_probabilities(self.root, self.rows(protocol)),
                "baseline_copy_lookup": lambda: copy_lookup_probabilities(self.root, self.rows(protocol), keys)}
        for name, fit in fits.items():
            log.info("evaluating %s on the %s split", name, protocol)
            probabilities, y_true = fit()
            metrics = compute_metrics(y_true, probabilities, list(CLASS_NAMES), self.families(protocol))
            metrics.update(arch=name, protocol=protocol, display_name=BASELINES[name], split_sha256=self.split_sha(protocol),
                           predictions=probabilities.argmax(1).tolist(), true_labels=y_true.tolist())
            written.append(self._write(name, protocol, metrics, "baseline"))
        return written

    def _write(self, name: str, protocol: str, metrics: dict, kind: str) -> Path:
        """The metrics file, through the typed schema (so nothing is written that the pages cannot read)."""
        from lungfake.evaluation.metrics import SCHEMA_VERSION

        target = self.store.metrics_json(name, protocol)
        public = {k: _plain(v) for k, v in metrics.items() if not k.startswith("_")}
        typed = EvaluationMetrics.from_json({"schema_version": SCHEMA_VERSION, "kind": kind, **public}, target.name)
        typed = _with_kept_explanation(typed, target)
        typed.write(target)
        log.info("%s/%s: accuracy %.4f %s -> %s", name, protocol, typed.accuracy, typed.accuracy_ci95, target)
        return target


def _with_kept_explanation(metrics: EvaluationMetrics, previous_file: Path) -> EvaluationMetrics:
    """The overlay figures (`python -m lungfake explanations`) are measured apart from evaluate: kept when the file
    being replaced measured the same weights, dropped (to be measured again) when the weights changed."""
    import dataclasses

    if metrics.weights_sha256 is None or not previous_file.is_file():
        return metrics
    try:
        previous = EvaluationMetrics.read(previous_file)
    except MetricsError:
        return metrics
    if previous.explanation is None or previous.weights_sha256 != metrics.weights_sha256:
        return metrics
    return dataclasses.replace(metrics, explanation=previous.explanation)


def served_grouped_metrics(store=None) -> dict[str, EvaluationMetrics]:
    """The served models' and the ensemble's grouped metrics computed on the committed split, by display name."""
    return {m.display_name: m for (_, protocol), m in sorted(load_all_metrics(store).items())
            if protocol == "grouped" and not m.is_baseline and split_warning(m, store) is None}


def write_error_sprite(root, store=None) -> Path:
    """The committed sprite of every grouped test tile a served model or the ensemble gets wrong."""
    from lungfake.evaluation.misclassified import held_out_rows, misclassified_paths, write_sprite
    from lungfake.serving.store import WeightsStore

    store = WeightsStore.resolve(store)
    graded = list(served_grouped_metrics(store).values())
    if not graded:
        raise MetricsError("no grouped metrics of the committed split to take misclassified tiles from; run evaluate first.")
    return write_sprite(root, misclassified_paths(graded, held_out_rows(store, graded[0])), store)


def split_warning(metrics: EvaluationMetrics, store=None) -> str | None:
    """Why these metrics may not describe the committed split (None when they do)."""
    from lungfake.data.splits import split_sha256
    from lungfake.serving.store import WeightsStore

    path = WeightsStore.resolve(store).split_csv(metrics.protocol)
    if not path.exists():
        return f"The committed {metrics.protocol} split is missing, so these figures cannot be tied to it."
    recorded = metrics.split_sha256
    if recorded == split_sha256(path):
        return None
    what = "no record of the split they were computed on" if recorded is None else "another split than the committed one"
    return (f"{metrics.display_name or metrics.arch}: these {metrics.protocol}-split figures come from {what} "
            f"(the split was rebuilt since). Until the model is retrained and re-evaluated on the committed split "
            "(python -m lungfake train, then evaluate), do not compare them with figures that are.")
