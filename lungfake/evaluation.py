"""Held-out metrics of a model on a split's test tiles, written as the JSON the dashboard reads."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from .classes import is_cancer

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
    }


def predict_probabilities(model, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate(
        [np.asarray(model(pixels[s : s + batch_size].astype(np.float32), training=False)) for s in range(0, len(pixels), batch_size)]
    )


def metrics_path(arch: str, protocol: str, folder=None):
    from .registry import weights_dir

    return weights_dir(folder) / "metrics" / f"{arch}_{protocol}.json"


def evaluate_on_split(model, class_names: list[str], input_size: int, root, split_csv) -> dict:
    """Metrics of a model on the test tiles of a split CSV."""
    from .classes import CLASS_NAMES
    from .splits import load_split, rows_in
    from .training import load_pixels

    test_rows = rows_in(load_split(split_csv), "test")
    pixels, labels = load_pixels(root, test_rows, input_size)
    # load_pixels indexes the canonical class list; re-index into the model's own order.
    y_true = np.array([class_names.index(CLASS_NAMES[k]) for k in labels])
    families = np.array([r.family for r in test_rows])[: len(y_true)]
    return compute_metrics(y_true, predict_probabilities(model, pixels), class_names, families)


def evaluate_all(root, arch: str = "all", protocol: str = "all", folder=None) -> list:
    """Write weights/metrics/<arch>_<protocol>.json for every model that is available here."""
    import json
    import sys

    import keras

    from .models import ARCHITECTURES
    from .registry import load_model, load_registry, sha256_of, weights_dir
    from .splits import PROTOCOLS
    from .training import history_path, unregistered_model_path

    registry = load_registry(folder)
    written = []
    for a in ARCHITECTURES if arch == "all" else [arch]:
        for p in PROTOCOLS if protocol == "all" else [protocol]:
            entry = registry.get(a)
            if entry is None:
                print(f"skipping {a}/{p}: {a} is not in the registry (train it with --split grouped first)", file=sys.stderr)
                continue
            if p == entry.split:
                model, model_file, sha = load_model(entry, folder), entry.file, entry.sha256
            else:
                path = unregistered_model_path(a, p)
                if not path.exists():
                    print(f"skipping {a}/{p}: no model at {path} (train it with --split {p})", file=sys.stderr)
                    continue
                model, model_file, sha = keras.models.load_model(path, compile=False, safe_mode=True), str(path.name), sha256_of(path)
            split_csv = weights_dir(folder) / "splits" / f"{p}.csv"
            metrics = evaluate_on_split(model, list(entry.class_names), entry.input_size, root, split_csv)
            history = json.loads(history_path(a, p, folder).read_text())
            metrics.update(
                arch=a, protocol=p, display_name=entry.display_name or a, model_file=model_file, weights_sha256=sha, input_size=entry.input_size,
                history=history["history"], train_minutes=history.get("train_minutes"), recipe=history["recipe"],
            )
            target = metrics_path(a, p, folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(metrics, indent=1) + "\n")
            print(f"{a}/{p}: accuracy {metrics['accuracy']:.4f} {metrics['accuracy_ci95']} -> {target}", file=sys.stderr)
            written.append(target)
    return written


def load_all_metrics(folder=None) -> dict[tuple[str, str], dict]:
    """Every committed metrics file, keyed by (arch, protocol)."""
    import json

    from .errors import RegistryError
    from .registry import weights_dir

    found = {}
    for path in sorted((weights_dir(folder) / "metrics").glob("*.json")):
        try:
            metrics = json.loads(path.read_text())
            found[(metrics["arch"], metrics["protocol"])] = metrics
        except (ValueError, KeyError) as exc:
            raise RegistryError(f"Metrics file {path.name} is malformed ({exc}); rerun python -m lungfake evaluate.") from None
    return found
