"""Golden predictions: the served models, through every caller, give the answers evaluation recorded.

The metrics files hold each grouped test tile's predicted class and calibrated confidence, computed by
`evaluate` from the split's tiles with the committed weights. A fixed sample of those tiles, scored again
through `Scorer`, the CLI and the score page, must give the same class and (within 1e-4) the same
calibrated probability. A change of class order, temperature, input size or resampling changes them.
"""
import json

import numpy as np
import pytest

from lungfake.classes import CLASS_NAMES, display_name
from lungfake.data.splits import load_split, rows_on
from lungfake.serving.registry import load_registry
from lungfake.serving.store import WeightsStore
from tests.helpers import DATA_DIR, needs_data

PER_CLASS = 30
TOLERANCE = 1e-4  # the metrics files keep confidences to 4 decimals
pytestmark = [needs_data, pytest.mark.slow]


def _metrics(name: str) -> dict:
    return json.loads(WeightsStore.resolve().metrics_json(name, "grouped").read_text())


def golden_sample(per_class: int = PER_CLASS) -> list[tuple[str, int]]:
    """(tile path, index among the grouped test tiles): per class, tiles spread evenly over its test tiles."""
    test = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "test")
    sample = []
    for label in CLASS_NAMES:
        indices = [i for i, row in enumerate(test) if row.label == label]
        picks = np.linspace(0, len(indices) - 1, per_class).round().astype(int)
        sample += [(test[indices[k]].path, indices[k]) for k in picks]
    return sample


def expected(name: str, index: int) -> tuple[str, float]:
    """The class and calibrated confidence `evaluate` recorded for one test tile."""
    metrics = _metrics(name)
    return metrics["class_names"][metrics["predictions"][index]], metrics["confidence"][index]


def test_the_metrics_were_computed_with_the_served_weights():
    for arch, entry in load_registry().items():
        assert _metrics(arch)["weights_sha256"] == entry.sha256, f"{arch}: metrics from other weights; rerun evaluate"


@pytest.fixture(scope="module")
def golden_scores():
    from lungfake.scoring.scoring import Scorer
    from lungfake.serving.images import read_image_file

    sample = golden_sample()
    scorer = Scorer.load("all")
    return sample, scorer.score([read_image_file(DATA_DIR / path) for path, _ in sample], [path for path, _ in sample])


def _check(score_of_model, name: str, index: int, path: str) -> None:
    predicted, confidence = expected(name, index)
    assert score_of_model["predicted"] == predicted, f"{name} on {path}: {score_of_model['predicted']} != {predicted}"
    assert abs(score_of_model["probabilities"][predicted] - confidence) <= TOLERANCE, \
        f"{name} on {path}: {score_of_model['probabilities'][predicted]:.6f} != {confidence}"


def test_scorer_reproduces_every_models_and_the_ensembles_recorded_predictions(golden_scores):
    sample, scores = golden_scores
    assert len(scores) == 3 * PER_CLASS
    for (path, index), score in zip(sample, scores):
        for arch, model in score.models.items():
            _check(model.to_json(), arch, index, path)
        _check(score.ensemble.to_json(), "ensemble", index, path)


def test_the_cli_reproduces_them(tmp_path, capsys):
    from lungfake.cli import main

    sample = golden_sample(3)  # the CLI reads files itself: a few tiles per class show it scores as Scorer does
    assert main(["predict", "--json", *[str(DATA_DIR / path) for path, _ in sample]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(sample)
    for (path, index), line in zip(sample, lines):
        assert line["file"].endswith(path)
        for arch, model in line["models"].items():
            _check(model, arch, index, path)
        _check(line["ensemble"], "ensemble", index, path)


def test_the_score_page_reproduces_them():
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, MODEL_LOAD_TIMEOUT

    at = AppTest.from_file(APP, default_timeout=MODEL_LOAD_TIMEOUT)
    at.run()
    for path, index in golden_sample(2):
        at.file_uploader[0].upload(path.rsplit("/", 1)[-1], (DATA_DIR / path).read_bytes(), "image/jpeg").run()
        assert not at.exception
        predictions = [m for m in at.metric if m.label == "Prediction"]
        score = at.session_state["tile_score"]
        everyone = {**score.models, "ensemble": score.ensemble}
        for arch, model in everyone.items():
            _check(model.to_json(), arch, index, path)
        # What the page shows, in the order it shows it: the ensemble first, then each model.
        for metric, arch in zip(predictions, ["ensemble", *score.models]):
            predicted, confidence = expected(arch, index)
            assert metric.value == display_name(predicted)
            shown = float(metric.delta.split("%")[0]) / 100  # to one decimal of a percent
            assert abs(shown - confidence) <= 0.0005 + TOLERANCE, f"{arch} shows {metric.delta}, recorded {confidence}"
