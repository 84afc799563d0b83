"""The committed models, registry and metrics, checked against each other and the real tiles."""
import json
import zipfile

import numpy as np
import pytest

from lungfake import cli
from lungfake.evaluation import evaluate_on_split, load_all_metrics
from lungfake.registry import load_model, load_registry, sha256_of, weights_dir
from lungfake.splits import load_split, rows_in
from tests.helpers import DATA_DIR, needs_data

SERVED = ("resnet50", "mobilenetv2")
REQUIRED_METRICS = {
    "accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "classification_report", "confusion_matrix",
    "binary_accuracy", "binary_sensitivity", "binary_specificity", "roc_auc", "expected_calibration_error",
    "n_test", "history",
}


def test_registry_describes_both_served_models():
    registry = load_registry()
    assert set(SERVED) <= set(registry)
    for arch in SERVED:
        entry = registry[arch]
        path = weights_dir() / entry.file
        assert sha256_of(path) == entry.sha256
        assert path.stat().st_size < 100 * 1024 * 1024
        assert entry.split == "grouped" and entry.class_names == ("lung_n", "lung_aca", "lung_scc")
        model = load_model(entry)
        assert model.get_layer(entry.gradcam_layer) is not None


def test_grouped_metrics_are_consistent_with_split_and_weights():
    metrics = load_all_metrics()
    registry = load_registry()
    n_test = len(rows_in(load_split(weights_dir() / "splits" / "grouped.csv"), "test"))
    for arch in SERVED:
        m = metrics[(arch, "grouped")]
        assert REQUIRED_METRICS <= set(m)
        assert m["weights_sha256"] == registry[arch].sha256
        matrix = np.asarray(m["confusion_matrix"])
        assert matrix.sum() == m["n_test"] == n_test
        assert m["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
        assert m["accuracy_ci95"][0] <= m["accuracy"] <= m["accuracy_ci95"][1]
        assert len(m["history"]["val_accuracy"]) == registry[arch].recipe["epochs"]


@needs_data
def test_committed_mobilenetv2_metrics_are_reproduced_by_evaluation():
    entry = load_registry()["mobilenetv2"]
    fresh = evaluate_on_split(load_model(entry), list(entry.class_names), entry.input_size, DATA_DIR,
                              weights_dir() / "splits" / "grouped.csv")
    committed = load_all_metrics()[("mobilenetv2", "grouped")]
    # oneDNN may order float sums differently run to run: allow a near-tie or two to flip.
    assert np.abs(np.subtract(fresh["confusion_matrix"], committed["confusion_matrix"])).sum() <= 4
    assert fresh["accuracy"] == pytest.approx(committed["accuracy"], abs=2 / committed["n_test"])


@needs_data
def test_predict_cli_on_real_test_tiles(capsys):
    test_rows = rows_in(load_split(weights_dir() / "splits" / "grouped.csv"), "test")
    chosen = [next(r for r in test_rows if r.label == label) for label in ("lung_n", "lung_aca", "lung_scc")]
    files = [str(DATA_DIR / r.path) for r in chosen]
    assert cli.main(["predict", *files, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == files
    for line in lines:
        assert set(line["models"]) == set(load_registry())
        for result in line["models"].values():
            assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert result["predicted"] in ("lung_n", "lung_aca", "lung_scc")


def test_served_model_files_hold_no_optimizer_state():
    import io

    import h5py

    for arch in SERVED:
        with zipfile.ZipFile(weights_dir() / load_registry()[arch].file) as archive:
            with h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
                assert "optimizer" not in weights or len(weights["optimizer"]) == 0
