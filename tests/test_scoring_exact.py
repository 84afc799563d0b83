"""The scoring path's outputs, exactly: what JSON, CSV and every model's score hold, batching, calibration, TTA and
Grad-CAM, on a tiny model."""
import csv
import io
import json

import numpy as np
import pytest

from lungfake.evaluation.calibration_fitting import fit_temperature
from lungfake.scoring.scoring import BATCH, ImageScore, ModelScore, Progress, Scorer, csv_text, json_text
from lungfake.serving.calibration import apply_temperature
from lungfake.serving.images import to_model_input
from lungfake.serving.ood import OodVerdict
from lungfake.serving.registry import EnsembleCalibration, update_calibration
from tests.helpers import he_like

CLASSES = ("lung_n", "lung_aca", "lung_scc")
VERDICT = OodVerdict(False, "lung H&E tissue", True, "stain distance 9.0, limit 8.0")


def _model(arch: str, probabilities, warn_below: float = 0.9, sha: str = "a" * 64) -> ModelScore:
    return ModelScore(arch, arch.upper(), dict(zip(CLASSES, probabilities)), sha, warn_below)


def _image(models, name: str = "t.png", verdict=VERDICT, calibration=EnsembleCalibration(1.0, 0.5)) -> ImageScore:
    return ImageScore(name, np.zeros((2, 2, 3), np.uint8), {m.arch: m for m in models}, verdict, calibration)


def test_a_models_score_reads_as_json_exactly():
    score = _model("m", [0.1, 0.2, 0.7])
    assert (score.predicted, score.confidence, score.low_confidence) == ("lung_scc", 0.7, True)
    assert score.cancer_probability == pytest.approx(0.9)
    assert score.to_json() == {"probabilities": {"lung_n": 0.1, "lung_aca": 0.2, "lung_scc": 0.7}, "predicted": "lung_scc",
                               "cancer_probability": 0.9, "low_confidence": True, "weights_sha256": "a" * 64}
    assert _model("m", [0.1234567, 0.0000001, 0.8765432]).to_json()["probabilities"]["lung_n"] == 0.123457


def test_an_images_json_holds_its_verdict_each_model_and_the_ensemble():
    image = _image([_model("a", [0.6, 0.3, 0.1]), _model("b", [0.2, 0.7, 0.1])])
    payload = image.to_json()
    assert list(payload) == ["file", "verdict", "cancer", "subtype", "subtype_uncertain", "verdict_reasons", "ood",
                             "ood_reason", "domain_shift", "domain_shift_reason", "scale_factor", "models", "models_agree",
                             "ensemble"]
    assert payload["file"] == "t.png" and payload["domain_shift"] is True and payload["models_agree"] is False
    assert payload["scale_factor"] == 1.0
    # cancer (0.6), tissue unlike LC25000's and no margin chosen for such tissue yet: the subtype is withheld
    assert (payload["verdict"], payload["cancer"], payload["subtype"], payload["subtype_uncertain"]) == (
        "Carcinoma, subtype uncertain", True, None, True)
    assert payload["ensemble"]["probabilities"] == {"lung_n": 0.4, "lung_aca": 0.5, "lung_scc": 0.1}
    assert payload["ensemble"]["predicted"] == "lung_aca" and payload["ensemble"]["weights_sha256"] == "aaaaaaaaaaaa,aaaaaaaaaaaa"
    single = _image([_model("a", [0.6, 0.3, 0.1])]).to_json()
    assert "ensemble" not in single and single["models_agree"] is True and single["verdict"] == "Benign lung tissue"


def test_a_refused_images_json_and_csv_give_no_class():
    refused = OodVerdict(True, "colours unlike H&E", None, "")
    image = _image([_model("a", [0.6, 0.3, 0.1]), _model("b", [0.2, 0.7, 0.1])], verdict=refused)
    payload = image.to_json()
    assert (payload["verdict"], payload["cancer"], payload["subtype"], payload["models_agree"]) == ("Not scored", None, None, None)
    for part in (*payload["models"].values(), payload["ensemble"]):
        assert part["predicted"] is None and part["cancer_probability"] is None and part["low_confidence"] is None
        assert set(part["probabilities"]) == {"lung_n", "lung_aca", "lung_scc"}  # what the models said stays readable
    rows = list(csv.reader(io.StringIO(csv_text([image]))))
    assert all(row[1] == "Not scored" and row[5:7] == ["", ""] and row[10] == "" for row in rows[1:])


def test_json_text_is_one_object_for_one_image_else_a_list_with_failures():
    image = _image([_model("a", [0.6, 0.3, 0.1])])
    assert json.loads(json_text([image])) == image.to_json()
    assert json.loads(json_text([image, image])) == [image.to_json(), image.to_json()]
    assert json.loads(json_text([image], [("bad.png", "damaged")])) == [image.to_json(), {"file": "bad.png", "error": "damaged"}]
    assert json.loads(json_text([], [("bad.png", "damaged")])) == [{"file": "bad.png", "error": "damaged"}]


def test_csv_text_has_a_row_per_model_and_the_ensemble_and_one_per_failure():
    image = _image([_model("a", [0.6, 0.3, 0.1]), _model("b", [0.2, 0.7, 0.1], warn_below=0.5)])
    rows = list(csv.reader(io.StringIO(csv_text([image], [("x.png", "not an image")]))))
    assert rows[0] == ["file", "verdict", "subtype_uncertain", "model", "weights_sha256", "predicted", "predicted_name",
                       "p_lung_n", "p_lung_aca", "p_lung_scc", "low_confidence", "ood", "ood_reason", "domain_shift",
                       "domain_shift_reason", "scale_factor", "error"]
    assert rows[1] == ["t.png", "Carcinoma, subtype uncertain", "True", "a", "a" * 64, "lung_n", "Benign lung tissue", "0.600000",
                       "0.300000", "0.100000", "True", "False", "lung H&E tissue", "True", "stain distance 9.0, limit 8.0",
                       "1.0", ""]
    assert rows[2][3] == "b" and rows[2][5:7] == ["lung_aca", "Lung adenocarcinoma"] and rows[2][10] == "False"
    assert rows[3][3] == "ensemble" and rows[3][7:10] == ["0.400000", "0.500000", "0.100000"] and rows[3][10] == "False"
    assert rows[4] == ["x.png"] + [""] * 15 + ["not an image"]
    assert len(rows) == 5
    assert list(csv.reader(io.StringIO(csv_text([], [("x.png", "e")]))))[0][7] == "low_confidence"  # no class columns


def test_progress_estimates_the_time_left_from_the_pace_so_far():
    assert Progress(2, 10, 4.0).seconds_left == 16.0
    assert Progress(0, 10, 4.0).seconds_left is None and Progress(10, 10, 4.0).seconds_left == 0.0


@pytest.fixture(scope="module")
def hot_weights(tiny_weights, tmp_path_factory):
    """The tiny store at temperature 2, with a recorded warning threshold."""
    import shutil

    folder = tmp_path_factory.mktemp("hot") / "w"
    shutil.copytree(tiny_weights, folder)
    update_calibration("tiny", 2.0, {"threshold": 0.4}, folder)
    return folder


def test_every_image_of_a_batch_larger_than_a_chunk_scores_as_it_does_alone(hot_weights):
    scorer = Scorer.load("all", hot_weights)
    images = [he_like(s, 48 + s % 3 * 8) for s in range(BATCH + 3)]
    together = scorer.score(images)
    assert [s.name for s in together[:2]] == ["image 1", "image 2"] and len(together) == BATCH + 3
    for i in (0, BATCH - 1, BATCH, BATCH + 2):
        alone = scorer.score([images[i]], [f"only {i}"])[0]
        assert alone.name == f"only {i}"
        assert list(alone.models["tiny"].probabilities.values()) == pytest.approx(
            list(together[i].models["tiny"].probabilities.values()), abs=1e-6)
        assert together[i].rgb is images[i] and together[i].ood == alone.ood


def test_a_models_score_is_its_calibrated_forward_pass_with_the_registrys_identity(hot_weights):
    scorer = Scorer.load("all", hot_weights)
    served = scorer.served[0]
    tile = he_like(21, 64)
    score = scorer.score([tile])[0].models["tiny"]
    raw = served.loaded.forward(to_model_input(tile, 32)[None])[1]
    assert list(score.probabilities) == list(served.entry.class_names)
    assert list(score.probabilities.values()) == pytest.approx(list(apply_temperature(raw, 2.0)[0]), abs=1e-6)
    assert (score.arch, score.name, score.weights_sha256, score.warn_below) == ("tiny", "tiny", served.entry.sha256, 0.4)
    assert score.heatmap is None


def test_grad_cam_is_computed_for_the_predicted_class_only_when_asked(hot_weights):
    scorer = Scorer.load("all", hot_weights)
    tiles = [he_like(31, 64), he_like(32, 64)]
    explained = scorer.score(tiles, explain=True)
    from lungfake.explain.cam import OverlayExplainer

    explainer = OverlayExplainer(scorer.served[0].loaded)
    for tile, score in zip(tiles, explained):
        model = score.models["tiny"]
        expected = explainer.heatmap(tile, model.predicted)
        assert model.heatmap.shape == expected.shape and np.allclose(model.heatmap, expected, atol=1e-5)


def test_loading_reports_each_model_before_it_loads(hot_weights):
    seen = []
    scorer = Scorer.load("tiny", hot_weights, on_model=lambda i, n, name: seen.append((i, n, name)))
    assert seen == [(0, 1, "tiny")] and [s.entry.arch for s in scorer.served] == ["tiny"]
    assert scorer.ensemble_calibration == EnsembleCalibration()


def test_a_fitted_temperature_minimises_the_log_loss():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 1.0
    probabilities = np.exp(logits * 3) / np.exp(logits * 3).sum(axis=1, keepdims=True)  # over-confident by 3
    temperature = fit_temperature(probabilities, labels)

    def loss(t):
        return -np.log(apply_temperature(probabilities, t)[np.arange(400), labels]).mean()

    assert 2.0 < temperature < 4.5
    assert loss(temperature) <= min(loss(temperature * 0.9), loss(temperature * 1.1))
    weights = np.where(labels == 0, 1.0, 0.0)  # only the first class's tiles count
    weighted = fit_temperature(probabilities, labels, weights)
    assert weighted == pytest.approx(fit_temperature(probabilities[labels == 0], labels[labels == 0]), rel=1e-3)


def test_json_text_is_indented_by_two_and_probabilities_kept_to_six_decimals():
    image = _image([_model("a", [0.87654321, 0.12345678, 0.00000001])])
    assert json_text([image]) == json.dumps(image.to_json(), indent=2)
    assert image.to_json()["models"]["a"]["cancer_probability"] == 0.123457


def test_two_served_models_are_combined_at_the_ensembles_own_temperature(hot_weights):
    from dataclasses import replace

    from lungfake.scoring.scoring import ServedModel
    from lungfake.serving.inference import LoadedModel

    first = Scorer.load("all", hot_weights)
    twin = ServedModel(LoadedModel.load(replace(first.served[0].entry, arch="twin"), hot_weights))
    scorer = Scorer([first.served[0], twin], first.screen, EnsembleCalibration(3.0, 0.2))
    score = scorer.score([he_like(41, 64)])[0]
    member = list(score.models["tiny"].probabilities.values())
    assert list(score.ensemble.probabilities.values()) == pytest.approx(list(apply_temperature(np.array([member]), 3.0)[0]))
    assert score.ensemble.warn_below == 0.2


def test_grad_cam_is_made_for_the_class_each_image_is_predicted(hot_weights, monkeypatch):
    from lungfake.explain.cam import gradcam
    from lungfake.serving.model_file import CLASS_MAPS, PROBABILITIES

    scorer = Scorer.load("all", hot_weights)
    served = scorer.served[0]
    fixed = np.array([[0.1, 0.2, 0.7], [0.2, 0.7, 0.1]], np.float32)
    run = served.loaded.run
    monkeypatch.setattr(served.loaded, "run", lambda pixels: {**run(pixels), PROBABILITIES: fixed[: len(pixels)]})
    tiles = [he_like(51, 64), he_like(52, 64)]
    scores = scorer.score(tiles, explain=True)
    maps = run(np.stack([to_model_input(tile, 32) for tile in tiles]))[CLASS_MAPS]
    assert [s.models["tiny"].predicted for s in scores] == ["lung_scc", "lung_aca"]
    for score, class_maps, asked in zip(scores, maps, (2, 1)):
        np.testing.assert_array_equal(score.models["tiny"].heatmap, gradcam(class_maps[..., asked], 32))
