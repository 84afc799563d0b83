"""Measuring each served model's overlay on held-out tiles, choosing its method, and recording both.

`python -m lungfake explanations` runs it: every candidate method (cam.py) on validation tiles, where the method is
chosen (the most faithful that passes, within the latency budget); the chosen method on grouped test tiles, where it
is reported, with the randomisation check when the trained Keras model is at hand. The method and its validation
figures go to the registry (the app captions every overlay with them); the test figures to the model's metrics file
(the dashboard's "Can the overlays be trusted?").
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from lungfake.explain.cam import (
    OCCLUSION_CELLS,
    OCCLUSION_SPAN,
    RISE_MASKS,
    SCORECAM_CHANNELS,
    STITCH_PHASES,
    cells_per_side,
    heatmap,
    heatmaps,
    methods_for,
    run_explained,
)
from lungfake.explain.faithfulness import (
    Faithfulness,
    TileSpecificity,
    border_figures,
    rank_correlation,
    summarise,
    tile_curves,
    tile_specificity,
)
from lungfake.serving.calibration import apply_temperature
from lungfake.serving.inference import LoadedModel
from lungfake.serving.model_file import PROBABILITIES
from lungfake.serving.registry import GRADCAM, METHOD_LABELS, OCCLUSION, RISE, SCORECAM, STITCHED, ModelEntry

log = logging.getLogger(__name__)

CANDIDATES = (GRADCAM, STITCHED, SCORECAM)  # the default overlay's
PRECISE_CANDIDATES = (OCCLUSION, RISE)  # the overlay offered on request
# The latency budget, in passes of the network per map rather than in milliseconds, so that the choice does not
# depend on what else the machine was doing. Score-CAM's 9 passes are MobileNetV2's, the only served file with a
# Score-CAM layer: about 14 ms each on two cores, and with the other two models' 4 extra passes a warm upload with
# three overlays stays under 0.5 s (benchmarks/app_latency.py; with 16 channels, 17 passes, it did not). Exporting
# another model with a Score-CAM layer should come with a budget in that model's own passes.
EXTRA_PASSES = {GRADCAM: 0, STITCHED: STITCH_PHASES**2, SCORECAM: SCORECAM_CHANNELS + 1,
                OCCLUSION: (OCCLUSION_CELLS - OCCLUSION_SPAN + 1) ** 2, RISE: RISE_MASKS}
MAX_EXTRA_PASSES = SCORECAM_CHANNELS + 1
# the precise overlay's budget: RISE's 64 passes of each model, about 3 s for the three on two cores (issue 53 allows 5 s)
MAX_PRECISE_PASSES = RISE_MASKS
VAL_EVERY, TEST_EVERY = 27, 12  # every 27th validation tile (100), every 12th grouped test tile (119)
RANDOMISATION_TILES = 40


def with_method(entry: ModelEntry, method: str) -> ModelEntry:
    return dataclasses.replace(entry, explanation_method=method)


def _predict(model: LoadedModel):
    """The model as faithfulness.py takes it: model inputs -> calibrated probabilities."""
    from lungfake.evaluation.evaluator import predict_probabilities

    return lambda pixels: apply_temperature(predict_probabilities(model, pixels), model.entry.temperature)


def maps_of(model: LoadedModel, pixels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], float]:
    """(uncalibrated probabilities, the registered method's maps of each input's predicted class, milliseconds per
    map) of model inputs, one tile per call of the file as the app makes them."""
    probabilities, maps, start = [], [], time.perf_counter()
    for image in pixels:
        outputs, class_maps = run_explained(model, image[None].astype(np.float32))
        probabilities.append(outputs[PROBABILITIES][0])
        class_index = int(np.argmax(probabilities[-1]))
        maps.append(heatmap(model.entry.explanation_method, class_maps[0][..., class_index], model.entry.input_size))
    return np.array(probabilities), maps, 1000 * (time.perf_counter() - start) / max(1, len(pixels))


def measure(model: LoadedModel, pixels: np.ndarray, families: np.ndarray,
            randomised: LoadedModel | None = None) -> Faithfulness:
    """Deletion, insertion, border and tile-specific figures of the model's registered method on these model inputs
    (and the randomisation check against the same model with its top block re-initialised, on the first tiles)."""
    predict = _predict(model)
    probabilities, maps, milliseconds = maps_of(model, pixels)
    predicted = probabilities.argmax(axis=1)
    cells = cells_per_side(model.entry.explanation_method, model.feature_cells, model.activation_cells)
    curves = [tile_curves(predict, image, relevance, int(c), cells, seed=i)
              for i, (image, relevance, c) in enumerate(zip(pixels, maps, predicted))]
    correlations = None
    if randomised is not None:
        count = min(RANDOMISATION_TILES, len(pixels))
        random_maps = heatmaps(randomised, pixels[:count].astype(np.float32), predicted[:count])
        correlations = [rank_correlation(a, b) for a, b in zip(maps[:count], random_maps)]
    return summarise(model.entry.explanation_method, curves, [border_figures(m) for m in maps], families, cells,
                     milliseconds, correlations, tile_specificity(predict, pixels, maps, predicted, families))


def measure_specificity(model: LoadedModel, pixels: np.ndarray, families: np.ndarray) -> TileSpecificity:
    """How tile-specific the model's registered maps are on these model inputs (faithfulness.tile_specificity)."""
    probabilities, maps, _ = maps_of(model, pixels)
    return tile_specificity(_predict(model), pixels, maps, probabilities.argmax(axis=1), families)


def choose_method(figures: dict[str, Faithfulness], budget: int = MAX_EXTRA_PASSES) -> str:
    """The most faithful method (deletion margin on validation tiles) among those that pass within the latency
    budget (passes of the network), those that also meet the border, resolution and tile-specific targets first; with
    none passing, the most faithful within the budget (its overlay is then shown behind a caution)."""
    fast = {m: f for m, f in figures.items() if EXTRA_PASSES[m] <= budget} or figures
    passing = {m: f for m, f in fast.items() if f.passes} or fast
    preferred = {m: f for m, f in passing.items() if f.meets_targets} or passing
    return max(preferred, key=lambda m: preferred[m].deletion_margin)


def randomised_model(entry: ModelEntry, keras_path: Path, folder: Path) -> LoadedModel:
    """The served view of the trained Keras model with its top block and head re-initialised (models.randomise_top)."""
    import keras

    from lungfake.training.architectures import ARCHITECTURE_SPECS, TEST_MODEL, randomise_top, register_custom_layers
    from lungfake.training.export import served_model_bytes

    register_custom_layers()
    model = keras.models.load_model(keras_path, compile=False, safe_mode=True)
    changed = randomise_top(model, ARCHITECTURE_SPECS.get(entry.arch, TEST_MODEL).top_block)
    log.info("%s: %d layers re-initialised for the randomisation check", entry.arch, changed)
    path = folder / f"{entry.arch}_randomised.tflite"
    path.write_bytes(served_model_bytes(model, entry.gradcam_layer, float16=False, scorecam_layer=entry.scorecam_layer))
    return LoadedModel.from_file(entry, path)


def describe(figures: Faithfulness) -> str:
    """One line of figures, for logs and benchmarks."""
    spearman = "not measured" if figures.randomisation_spearman is None else f"{figures.randomisation_spearman:.2f}"
    return (f"{METHOD_LABELS.get(figures.method, figures.method)}: {figures.cells}x{figures.cells} cells, "
            f"{figures.milliseconds_per_map:.0f} ms/map; deletion margin {figures.deletion_margin:+.3f} "
            f"{figures.deletion_margin_ci95}, insertion {figures.insertion_margin:+.3f}; top fifth "
            f"{figures.top_fifth_drop:.3f} vs random {figures.random_fifth_drop:.3f} (x{figures.top_fifth_ratio:.2f} "
            f"{figures.top_fifth_ratio_ci95}); peak in outer eighth {figures.border_peak_share:.0%}, mass "
            f"{figures.border_mass:.0%}; randomisation Spearman {spearman}; {'passes' if figures.passes else 'FAILS'}; "
            f"vs another tile's fifth {figures.other_tile_text}, vs smooth random {figures.smooth_random_text}, "
            f"likeness to the mean map {figures.mean_map_text}: "
            f"{ {True: 'tile-specific', False: 'NOT tile-specific', None: 'specificity not measured'}[figures.tile_specific]}")


def _chosen_and_tested(loaded: LoadedModel, methods, budget: int, val, test, keras_path: Path | None) -> dict:
    """{method, candidates, validation, test}: these methods measured on validation tiles, the one chosen within the
    budget, and it measured on test tiles (with the randomisation check where the Keras model is at hand)."""
    entry, candidates = loaded.entry, {}
    for method in [m for m in methods if m in methods_for(loaded)]:
        candidates[method] = measure(loaded.with_entry(with_method(entry, method)), *val)
        log.info("%s on validation tiles, %s", entry.arch, describe(candidates[method]))
    chosen = choose_method(candidates, budget)
    with tempfile.TemporaryDirectory() as scratch:
        randomised = None
        if keras_path is not None:
            randomised = randomised_model(with_method(entry, chosen), keras_path, Path(scratch))
        tested = measure(loaded.with_entry(with_method(entry, chosen)), *test, randomised=randomised)
    log.info("%s on test tiles, %s", entry.arch, describe(tested))
    return {"method": chosen, "candidates": {m: f.to_json() for m, f in candidates.items()},
            "validation": candidates[chosen].to_json(), "test": tested.to_json()}


def check_model(entry: ModelEntry, val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                keras_path: Path | None, folder: Path | None = None, methods=CANDIDATES,
                precise_methods=PRECISE_CANDIDATES) -> dict:
    """{method, candidates (validation figures per method), validation, test, precise} for one model, precise being
    the same for the overlay offered on request ({} with no precise methods); val and test are (model inputs, families)."""
    loaded = LoadedModel.load(entry, folder)
    result = _chosen_and_tested(loaded, methods, MAX_EXTRA_PASSES, val, test, keras_path)
    precise = _chosen_and_tested(loaded, precise_methods, MAX_PRECISE_PASSES, val, test, keras_path) if precise_methods else {}
    return {**result, "precise": precise}


def _keras_model_of(arch: str, folder: Path | None) -> Path | None:
    """The trained Keras model arch's served file came from, if it is at hand (the randomisation check needs it)."""
    from lungfake.errors import TrainingError
    from lungfake.training.trainer import verified_trained_model

    try:
        return verified_trained_model(arch, "grouped", folder)
    except TrainingError as exc:
        log.warning("randomisation check of %s not run: %s", arch, exc)
        return None


def check_models(root: Path, which: str = "all", folder: Path | None = None, methods=CANDIDATES,
                 every: tuple[int, int] = (VAL_EVERY, TEST_EVERY), precise_methods=PRECISE_CANDIDATES) -> dict[str, dict]:
    """Measure, choose and record the overlay method of the chosen served models (module docstring)."""
    from lungfake.evaluation.evaluator import Evaluator
    from lungfake.evaluation.metrics import EvaluationMetrics
    from lungfake.serving.inference import select_entries
    from lungfake.serving.registry import OverlayTrust, update_explanation
    from lungfake.serving.store import WeightsStore

    store, evaluator, results = WeightsStore.resolve(folder), Evaluator(root, folder), {}
    val_tiles, test_tiles = (evaluator.pixels("grouped", side, 224)[::step] for side, step in zip(("val", "test"), every))
    val_families, test_families = (evaluator.families("grouped", side)[::step] for side, step in zip(("val", "test"), every))
    for entry in select_entries(which, store.root):
        size = entry.input_size
        # the tiles as the scorer's models see them (scale.py's views), so that the overlays are measured as served
        val_inputs, test_inputs = (evaluator.model_inputs(("every", side, step), tiles, size)
                                   for side, step, tiles in zip(("val", "test"), every, (val_tiles, test_tiles)))
        result = check_model(entry, (val_inputs, val_families), (test_inputs, test_families),
                             _keras_model_of(entry.arch, store.root), store.root, methods, precise_methods)
        trust = OverlayTrust.of(Faithfulness.from_json(result["validation"]))
        precise = result["precise"]
        precise_trust = (precise["method"], OverlayTrust.of(Faithfulness.from_json(precise["validation"])).to_json()) if precise else None
        update_explanation(entry.arch, result["method"], trust.to_json(), store.root, precise_trust)
        path = store.metrics_json(entry.arch, "grouped")
        if path.is_file():
            metrics = EvaluationMetrics.read(path)
            dataclasses.replace(metrics, explanation=result).write(path)
        results[entry.arch] = result
    return results
