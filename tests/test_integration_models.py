"""The committed models, registry and metrics, checked against each other and the real tiles."""
import json

import numpy as np
import pytest

from lungfake import cli
from lungfake.data.splits import load_split, rows_on
from lungfake.evaluation.evaluator import load_all_metrics, split_warning
from lungfake.serving.registry import load_registry, sha256_of
from lungfake.serving.store import WeightsStore
from tests.helpers import DATA_DIR, needs_data

STORE = WeightsStore.resolve()
pytestmark = pytest.mark.slow  # the committed models on real tiles
REQUIRED_METRICS = {
    "accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "classification_report", "confusion_matrix",
    "binary_accuracy", "binary_sensitivity", "binary_specificity", "roc_auc", "expected_calibration_error",
    "expected_calibration_error_uncalibrated", "temperature", "split_sha256", "colour_neutral_accuracy",
    "robustness", "n_test", "history",
}


def test_registry_describes_every_served_model():
    from ai_edge_litert.interpreter import Interpreter

    from lungfake.serving.inference import LoadedModel

    registry = load_registry()
    assert len(registry) >= 2
    for entry in registry.values():
        path = STORE.file(entry.file)
        assert sha256_of(path) == entry.sha256
        assert entry.split == "grouped" and entry.class_names == ("lung_n", "lung_aca", "lung_scc")
        assert entry.temperature > 0 and 0 < entry.low_confidence["threshold"] <= 1
        LoadedModel.load(entry)  # checks the input size and the three outputs against the registry
        weight_types = {d["dtype"] for d in Interpreter(model_path=str(path)).get_tensor_details()}
        assert np.float16 in weight_types  # weights stored at half size (model_file.py)
    assert sum(STORE.file(e.file).stat().st_size for e in registry.values()) <= 70e6


def test_served_metrics_describe_the_committed_split_and_weights():
    metrics = load_all_metrics()
    n_test = len(rows_on(load_split(STORE.split_csv("grouped")), "test"))
    for arch, entry in load_registry().items():
        m = metrics[(arch, "grouped")]
        assert set(m.to_json()) >= REQUIRED_METRICS and m.kind == "model"
        assert split_warning(m) is None
        assert m.weights_sha256 == entry.sha256 and m.temperature == pytest.approx(entry.temperature, rel=1e-4)
        matrix = np.asarray(m.confusion_matrix)
        assert matrix.sum() == m.n_test == n_test
        assert m.accuracy == pytest.approx(np.trace(matrix) / matrix.sum())
        assert m.accuracy_ci95[0] <= m.accuracy <= m.accuracy_ci95[1]
        assert len(m.history["val_accuracy"]) == entry.recipe["epochs"]


def test_baselines_are_evaluated_on_both_committed_splits():
    metrics = load_all_metrics()
    for name in ("baseline_colour", "baseline_copy_lookup"):
        for protocol in ("grouped", "random"):
            m = metrics[(name, protocol)]
            assert split_warning(m) is None and np.asarray(m.confusion_matrix).sum() == m.n_test


@needs_data
def test_predict_cli_on_real_test_tiles(capsys):
    held_out_rows = rows_on(load_split(STORE.split_csv("grouped")), "test")
    chosen = [next(r for r in held_out_rows if r.label == label) for label in ("lung_n", "lung_aca", "lung_scc")]
    files = [str(DATA_DIR / r.path) for r in chosen]
    assert cli.main(["predict", *files, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == files
    for line in lines:
        assert set(line["models"]) == set(load_registry())
        for result in [*line["models"].values(), line["ensemble"]]:
            assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert result["predicted"] in ("lung_n", "lung_aca", "lung_scc")
