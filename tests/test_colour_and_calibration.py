"""Colour statistics, colour matching, the colour baseline, temperature scaling and the warning threshold."""
import numpy as np
import pytest

from lungfake.classes import CLASS_NAMES
from lungfake.evaluation.calibration_fitting import choose_threshold, ece_interval_text, fit_temperature
from lungfake.evaluation.colour import ColourTarget, colour_baseline, lab_statistics, match_colour
from lungfake.evaluation.evaluator import compute_metrics, expected_calibration_error
from lungfake.serving.calibration import apply_temperature
from tests.helpers import cells, he_like, metrics_of


def test_lab_statistics_of_a_flat_tile():
    grey = np.full((16, 16, 3), 128, np.uint8)
    stats = lab_statistics(grey)[0]
    assert stats[0] == pytest.approx(53.6, abs=0.2)  # L* of sRGB 128
    assert np.allclose(stats[1:3], 0, atol=0.01) and np.allclose(stats[3:], 0, atol=1e-4)


def test_a_matched_tile_has_the_targets_statistics():
    target = ColourTarget((62.0, 18.0, -12.0), (14.0, 9.0, 7.0))
    matched = match_colour(cells(5), target)
    stats = lab_statistics(matched)[0]
    assert np.allclose(stats[:3], target.mean, atol=1.0)
    assert np.allclose(stats[3:], target.std, rtol=0.08)
    assert ColourTarget.from_json(target.to_json()) == target


def test_matching_keeps_the_tissue_and_changes_only_colour():
    tile = cells(6)
    matched = match_colour(tile, ColourTarget((55.0, 30.0, -20.0), (16.0, 12.0, 10.0)))
    grey_before, grey_after = tile.mean(axis=2).ravel(), matched.mean(axis=2).ravel()
    assert np.corrcoef(grey_before, grey_after)[0, 1] > 0.9


def test_the_colour_baseline_beats_chance_on_coloured_classes():
    rng = np.random.default_rng(0)
    tints = np.array([[20, -10, 0], [-15, 5, 10], [0, 15, -20]])
    tiles, labels = [], []
    for k, tint in enumerate(tints):
        for seed in range(12):
            tile = cells(100 * k + seed, size=48).astype(int) + tint + rng.integers(-8, 8, 3)
            tiles.append(np.clip(tile, 0, 255).astype(np.uint8))
            labels.append(k)
    features, labels = lab_statistics(np.stack(tiles)), np.array(labels)
    train, test = np.arange(len(labels)) % 3 != 0, np.arange(len(labels)) % 3 == 0
    accuracy = (colour_baseline().fit(features[train], labels[train]).predict(features[test]) == labels[test]).mean()
    assert accuracy > 0.8


def test_temperature_scaling_repairs_under_confidence():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(0, 1, (3000, 3))
    logits[np.arange(3000), y] += 2.5
    true_probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true_probabilities])  # labels drawn from the true probabilities
    under_confident = apply_temperature(true_probabilities, 2.5)  # what label smoothing does to a model
    temperature = fit_temperature(under_confident, y)
    assert temperature == pytest.approx(1 / 2.5, rel=0.15)
    repaired = apply_temperature(under_confident, temperature)
    assert expected_calibration_error(y, repaired) < expected_calibration_error(y, under_confident) / 2
    assert np.array_equal(repaired.argmax(axis=1), under_confident.argmax(axis=1))


def test_the_calibration_errors_interval_is_wide_when_errors_fall_in_few_families():
    families = np.repeat(np.arange(40), 20)
    y = np.zeros(800, int)
    probabilities = np.tile([0.95, 0.04, 0.01], (800, 1))
    spread, clustered = np.zeros(800, bool), np.zeros(800, bool)
    spread[::20] = True  # one wrong tile in every family
    clustered[:40] = True  # the same number of wrong tiles, all in two families
    found = {}
    for name, wrong in (("spread", spread), ("clustered", clustered)):
        found[name] = compute_metrics(np.where(wrong, 1, y), probabilities, list(CLASS_NAMES), families)
    for metrics in found.values():
        low, high = metrics["expected_calibration_error_ci95"]
        assert low <= metrics["expected_calibration_error"] <= high
    assert found["spread"]["expected_calibration_error_ci95"][1] < 0.005  # 95% confident, 95% right, in every resample
    assert found["clustered"]["expected_calibration_error_ci95"][1] > 0.04
    spread = metrics_of(expected_calibration_error=found["spread"]["expected_calibration_error"],
                        expected_calibration_error_ci95=found["spread"]["expected_calibration_error_ci95"])
    assert "0.000-0.0" in ece_interval_text(spread) and "target at most 0.03" in ece_interval_text(spread)


def test_threshold_keeps_accurate_predictions_above_it():
    confidence = np.linspace(0.5, 1.0, 200)
    correct = confidence > 0.6  # everything above 0.6 is right, everything below wrong
    probabilities = np.stack([confidence, 1 - confidence, np.zeros(200)], axis=1)
    y = np.where(correct, 0, 1)
    chosen = choose_threshold(probabilities, y, target=0.99)
    assert 0.58 < chosen.threshold <= 0.61
    assert chosen.val_accuracy >= 0.99 and 0.78 < chosen.val_coverage < 0.83


def test_the_ensemble_warns_at_its_own_val_threshold_not_the_strictest_models(tmp_path):
    from lungfake.scoring.scoring import ImageScore, ModelScore
    from lungfake.serving.ood import NOT_CHECKED
    from lungfake.serving.registry import EnsembleCalibration, load_ensemble_calibration, update_ensemble_calibration

    (tmp_path / "registry.json").write_text('{"models": {}}')
    assert load_ensemble_calibration(tmp_path) == EnsembleCalibration(1.0, None)
    update_ensemble_calibration(1.0, {"threshold": 0.8, "val_coverage": 0.7, "val_accuracy": 0.99}, tmp_path)
    assert load_ensemble_calibration(tmp_path) == EnsembleCalibration(1.0, 0.8)
    probabilities = {"lung_n": 0.9, "lung_aca": 0.05, "lung_scc": 0.05}
    models = {a: ModelScore(a, a, probabilities, "0" * 64, warn) for a, warn in (("a", 0.999), ("b", 0.7))}
    rgb = np.zeros((4, 4, 3), np.uint8)
    assert ImageScore("t", rgb, models, NOT_CHECKED).ensemble.low_confidence  # the strictest model's 0.999
    assert not ImageScore("t", rgb, models, NOT_CHECKED, load_ensemble_calibration(tmp_path)).ensemble.low_confidence


def test_the_ensemble_applies_its_own_temperature_to_the_mean_of_its_members():
    from lungfake.scoring.scoring import ImageScore, ModelScore
    from lungfake.serving.calibration import ensemble_probabilities
    from lungfake.serving.ood import NOT_CHECKED
    from lungfake.serving.registry import EnsembleCalibration

    members = {"a": {"lung_n": 0.9, "lung_aca": 0.06, "lung_scc": 0.04}, "b": {"lung_n": 0.5, "lung_aca": 0.4, "lung_scc": 0.1}}
    models = {a: ModelScore(a, a, p, "0" * 64, 0.5) for a, p in members.items()}
    rgb = np.zeros((4, 4, 3), np.uint8)
    plain = ImageScore("t", rgb, models, NOT_CHECKED).ensemble.probabilities
    assert plain["lung_n"] == pytest.approx(0.7) and plain["lung_aca"] == pytest.approx(0.23)
    sharper = ImageScore("t", rgb, models, NOT_CHECKED, EnsembleCalibration(0.5, None)).ensemble.probabilities
    expected = ensemble_probabilities([list(p.values()) for p in members.values()], 0.5)
    assert list(sharper.values()) == pytest.approx(list(expected)) and sharper["lung_n"] > 0.8
    assert max(sharper, key=sharper.get) == max(plain, key=plain.get)  # a temperature never changes the call


def test_every_named_shift_changes_a_tile_and_sharpening_is_the_opposite_of_blur():
    from lungfake.evaluation.robustness import blurred, named_shifts, sharpened

    tile = he_like(3, 96)
    for name, shift in named_shifts(None, None).items():
        moved = shift(tile)
        assert moved.shape == tile.shape and moved.dtype == np.uint8 and np.abs(moved.astype(int) - tile).mean() > 0.5, name

    def edge(image):
        return np.abs(np.diff(image.astype(float).mean(axis=2), axis=1)).mean()

    soft = blurred(tile, 1.0)  # as soft as LC25000's tiles
    assert edge(sharpened(soft, 1.5)) > 1.1 * edge(soft) and edge(blurred(soft)) < edge(soft) / 1.1


