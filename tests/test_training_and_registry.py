"""Train a tiny model end to end on synthetic tiles: checkpoint, resume, export, registry, evaluate, predict."""
import json
from dataclasses import replace

import numpy as np
import pytest

from lungfake.classes import CLASS_NAMES
from lungfake.data.splits import make_split, save_split, split_sha256
from lungfake.data.tiles import list_tiles
from lungfake.errors import ModelIntegrityError, RegistryError
from lungfake.evaluation.evaluator import Evaluator
from lungfake.evaluation.metrics import SCHEMA_VERSION, EvaluationMetrics
from lungfake.scoring.scoring import Scorer
from lungfake.serving.images import read_image_file, to_model_input
from lungfake.serving.inference import LoadedModel, select_entries
from lungfake.serving.registry import load_registry, sha256_of
from lungfake.training.trainer import Recipe, export_trained, family_sample, train
from tests.helpers import texture


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):

    base = tmp_path_factory.mktemp("trained")
    data = request.getfixturevalue("shared_tiny_dataset")
    tiles = list_tiles(data)
    families = [t.path.rsplit("/", 1)[-1] for t in tiles]  # each tile its own family: fine for mechanics
    rows = make_split(tiles, families, "random", seed=0)
    split_csv = base / "weights" / "splits" / "grouped.csv"
    save_split(rows, split_csv)
    recipe = Recipe("tiny", train_size=32, epochs=1, batch_size=8, max_rotation_degrees=10)
    run_dir = base / "run"
    model, history, finished = train(data, rows, recipe, run_dir)
    return {"base": base, "data": data, "rows": rows, "recipe": recipe, "run_dir": run_dir,
            "model": model, "history": history, "finished": finished, "split_csv": split_csv}


def test_training_checkpoints_and_records_history(trained):
    assert trained["finished"]
    assert set(trained["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds", "cpu_seconds"}
    assert trained["history"]["cpu_seconds"][0] > 0
    state = json.loads((trained["run_dir"] / "state.json").read_text())
    assert state["epochs_done"] == 1
    assert (trained["run_dir"] / "checkpoint.keras").exists()


def test_training_resumes_from_the_checkpoint(trained, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained["run_dir"], run_dir)  # resume a copy: the module's run stays as trained
    longer = Recipe(**{**trained["recipe"].__dict__, "epochs": 2})
    _, history, finished = train(trained["data"], trained["rows"], longer, run_dir)
    assert finished and len(history["loss"]) == 2
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 2


def test_a_checkpoint_is_not_resumed_under_another_recipe(trained, tmp_path):
    import shutil

    from lungfake.errors import TrainingError

    run_dir = tmp_path / "run"
    shutil.copytree(trained["run_dir"], run_dir)
    unfinished = {**json.loads((run_dir / "recipe.json").read_text()), "epochs": 3}  # 1 of 3 epochs done
    (run_dir / "recipe.json").write_text(json.dumps(unfinished))
    shorter = replace(trained["recipe"], epochs=2)  # would bend the cosine schedule mid-run
    with pytest.raises(TrainingError, match=r"1 of 3 epochs.*epochs=3 \(now 2\)"):
        train(trained["data"], trained["rows"], shorter, run_dir)
    assert json.loads((run_dir / "recipe.json").read_text())["epochs"] == 3  # the run's own record is kept
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1


def test_a_finished_run_is_extended_only_with_the_same_settings(trained, tmp_path):
    import shutil

    from lungfake.errors import TrainingError

    run_dir = tmp_path / "run"
    shutil.copytree(trained["run_dir"], run_dir)
    other_augmentation = replace(trained["recipe"], epochs=2, max_rotation_degrees=90)
    with pytest.raises(TrainingError, match="max_rotation_degrees=10"):
        train(trained["data"], trained["rows"], other_augmentation, run_dir)
    fewer_than_done = replace(trained["recipe"], epochs=0)
    with pytest.raises(TrainingError, match="move that folder away"):
        train(trained["data"], trained["rows"], fewer_than_done, run_dir)


def test_cpu_minutes_are_reported_only_where_every_epoch_recorded_them():
    from lungfake.training.trainer import train_cpu_minutes

    assert train_cpu_minutes({"epoch_seconds": [60, 60], "cpu_seconds": [120, 60]}) == 3.0
    # A model continued from epochs trained before CPU time was recorded: its CPU total is unknown, not a part.
    assert train_cpu_minutes({"epoch_seconds": [60, 60, 60], "cpu_seconds": [120, 60]}) is None
    assert train_cpu_minutes({"epoch_seconds": [60]}) is None


def test_the_time_left_counts_validation_and_checkpoints_once_an_epoch_is_done():
    from lungfake.training.trainer import seconds_left

    # 60 steps of 1 s an epoch; before a whole epoch is done only the steps' pace is known.
    assert seconds_left(10, 2, 60, 1.0, []) == 10 + 2 * 60
    # Whole epochs took 80 s (20 s of validation and checkpoint): this epoch's remainder pays it once, later ones each.
    assert seconds_left(10, 2, 60, 1.0, [80.0, 79.0, 81.0]) == 10 + 20 + 2 * 80
    assert seconds_left(0, 0, 60, 1.0, [80.0]) == 20


def test_each_epoch_samples_a_few_tiles_of_every_family():
    from lungfake.data.splits import SplitRow

    rows = [SplitRow(f"t{f}_{c}.png", "lung_n", f"fam{f}", "train") for f in range(10) for c in range(f + 1)]
    picked = family_sample(rows, 3, seed=1)
    families = [rows[i].family for i in picked]
    assert len(set(picked)) == len(picked) == sum(min(3, f + 1) for f in range(10))
    assert {families.count(f"fam{f}") for f in range(2, 10)} == {3}
    assert list(picked) != list(family_sample(rows, 3, seed=2))


def test_export_registers_a_verified_served_file_and_keeps_the_trained_keras_model(trained):
    import io
    import zipfile

    import h5py

    from lungfake.serving.inference import LoadedModel
    from lungfake.training.trainer import trained_model_path

    weights = trained["base"] / "weights"
    path = export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights)
    entry = load_registry(weights)["tiny"]
    assert path == weights / "tiny.tflite" and entry.file == "tiny.tflite" and entry.sha256 == sha256_of(path)
    assert entry.input_size == 32 and entry.class_names == CLASS_NAMES and entry.gradcam_layer == "last_conv"
    served = LoadedModel.load(entry, weights)
    keras_file = trained_model_path("tiny", "grouped")
    with zipfile.ZipFile(keras_file) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as h5:
        assert "optimizer" not in h5 or len(h5["optimizer"]) == 0
    history = json.loads((weights / "history" / "tiny_grouped.json").read_text())
    assert history["keras_sha256"] == sha256_of(keras_file)
    tiles = np.stack([to_model_input(texture(seed, 40), 32) for seed in range(4)])
    np.testing.assert_allclose(served.forward(tiles)[1], trained["model"].predict(tiles, verbose=0), atol=1e-3)


def test_tampered_or_missing_weights_are_refused(trained, tmp_path):
    from lungfake.serving.inference import LoadedModel

    weights = trained["base"] / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights)
    entry = load_registry(weights)["tiny"]
    copy = tmp_path / "w"
    copy.mkdir()
    (copy / "registry.json").write_text((weights / "registry.json").read_text())
    with pytest.raises(ModelIntegrityError, match="missing"):
        LoadedModel.load(entry, copy)
    (copy / "tiny.tflite").write_bytes((weights / "tiny.tflite").read_bytes() + b"x")
    with pytest.raises(ModelIntegrityError, match="does not match the registry"):
        LoadedModel.load(entry, copy)
    with pytest.raises(RegistryError, match="registry.*missing"):
        load_registry(tmp_path / "empty")


def test_evaluate_and_predict_with_the_exported_model(trained):
    weights = trained["base"] / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights,
                   split_sha=split_sha256(trained["split_csv"]))
    path, (_, _, metrics) = Evaluator(trained["data"], weights).evaluate_model("tiny", "grouped")
    written = EvaluationMetrics.read(path)  # the typed schema reads back what evaluate wrote
    assert written.split_sha256 == split_sha256(trained["split_csv"]) and written.kind == "model"
    assert written.schema_version == SCHEMA_VERSION and written.accuracy == metrics["accuracy"]
    assert metrics["n_test"] == sum(r.side == "test" for r in trained["rows"])
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["n_test"]
    assert metrics["temperature"] > 0 and "expected_calibration_error_uncalibrated" in metrics
    assert 0 <= metrics["colour_neutral_accuracy"]["value"] <= 1
    assert {"clean", "JPEG q30", "magnification 0.6x"} <= set(metrics["robustness"]["accuracy"])
    entry = load_registry(weights)["tiny"]
    assert entry.temperature == pytest.approx(metrics["temperature"], rel=1e-4) and "threshold" in entry.low_confidence

    some_tile = next(trained["data"].glob("nested/lung_aca/*.jpeg"))
    scored = Scorer.load("all", weights).score([read_image_file(some_tile)], ["tile"])[0]
    assert scored.ood.ood is None and "not checked" in scored.to_json()["ood_reason"]
    result = scored.models["tiny"]
    assert set(result.probabilities) == set(CLASS_NAMES)
    assert result.predicted in CLASS_NAMES
    assert abs(sum(result.probabilities.values()) - 1) < 1e-4
    with pytest.raises(RegistryError):
        select_entries("vgg16", weights)
    with pytest.raises(RegistryError, match="vgg16"):
        select_entries("tiny,vgg16", weights)
    assert [e.arch for e in select_entries("tiny, tiny", weights)] == ["tiny"]


def test_the_ensemble_is_calibrated_on_val_and_recorded_in_the_registry(trained):
    from lungfake.serving.registry import load_ensemble_calibration

    weights = trained["base"] / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights,
                   split_sha=split_sha256(trained["split_csv"]))
    evaluator = Evaluator(trained["data"], weights)
    _, part = evaluator.evaluate_model("tiny", "grouped")
    path = evaluator.evaluate_ensemble([part, part])  # two identical members: the ensemble is that model
    ensemble, member = json.loads(path.read_text()), part[2]
    assert ensemble["predictions"] == member["predictions"] and ensemble["accuracy"] == member["accuracy"]
    assert ensemble["temperature"] == pytest.approx(1.0, abs=0.02)  # the member is calibrated already
    recorded = load_ensemble_calibration(weights)
    assert recorded.temperature == pytest.approx(ensemble["temperature"], abs=1e-5)
    assert recorded.warn_below == ensemble["low_confidence"]["threshold"]


def test_time_budget_stops_after_an_epoch_and_a_rerun_resumes(shared_tiny_dataset, tmp_path):
    tiles = list_tiles(shared_tiny_dataset)
    rows = make_split(tiles, [t.path for t in tiles], "random", seed=1)
    recipe = Recipe("tiny", train_size=32, epochs=3, batch_size=8, max_rotation_degrees=0)
    _, history, finished = train(shared_tiny_dataset, rows, recipe, tmp_path / "run", max_minutes=0)
    assert not finished and len(history["loss"]) == 1
    _, history, finished = train(shared_tiny_dataset, rows, recipe, tmp_path / "run")
    assert finished and len(history["loss"]) == 3


def test_a_restart_begins_a_fresh_learning_rate_cycle():
    from lungfake.training.trainer import learning_rate_schedule

    recipe = Recipe("tiny", train_size=32, epochs=10, learning_rate=2e-3, warmup_epochs=1, restart_epochs=(4,),
                    restart_learning_rate=1e-3, restart_warmup_epochs=1)
    assert recipe.segment(0) == (0, 4) and recipe.segment(3) == (0, 4) and recipe.segment(4) == (4, 10)
    first, second = learning_rate_schedule(recipe, 10, 0), learning_rate_schedule(recipe, 10, 4)
    assert float(first(10)) == pytest.approx(2e-3) and float(first(40)) == pytest.approx(0, abs=1e-9)
    assert float(second(0)) == 0 and float(second(10)) == pytest.approx(1e-3) and float(second(60)) == pytest.approx(0, abs=1e-9)
    # The first cycle of a recipe with a restart is the whole of the recipe that stops there.
    assert recipe.same_schedule_until(Recipe(**{**recipe.__dict__, "epochs": 4, "restart_epochs": ()}), 4)
    assert not recipe.same_schedule_until(Recipe(**{**recipe.__dict__, "epochs": 4, "restart_epochs": (), "learning_rate": 1e-2}), 4)


def test_a_served_model_continues_at_a_restart(trained, tmp_path):
    from lungfake.errors import TrainingError
    from lungfake.training.trainer import served_starting_point

    weights = tmp_path / "weights"
    split_csv = trained["split_csv"]
    sha = split_sha256(split_csv)
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights, split_sha=sha)
    longer = Recipe(**{**trained["recipe"].__dict__, "epochs": 2, "restart_epochs": (1,)})
    start = served_starting_point("tiny", "grouped", longer, split_csv, weights)
    assert start.epochs_done == 1 and start.split_sha256 == sha
    model, history, finished = train(trained["data"], trained["rows"], longer, tmp_path / "run", start=start)
    assert finished and len(history["loss"]) == 2 and history["loss"][0] == trained["history"]["loss"][0]
    assert float(model.optimizer.iterations) == len(history["loss"][1:]) * np.ceil(
        len(family_sample([r for r in trained["rows"] if r.side == "train"], longer.copies_per_family, 0)) / longer.batch_size)
    with pytest.raises(TrainingError, match="not the first part"):
        served_starting_point("tiny", "grouped", Recipe(**{**longer.__dict__, "restart_epochs": ()}), split_csv, weights)
    other = tmp_path / "other.csv"
    save_split([replace(r, side="train") if r.side == "test" else replace(r, side="test") if r.side == "train" else r
                for r in trained["rows"]], other)
    with pytest.raises(TrainingError, match="another split"):
        served_starting_point("tiny", "grouped", longer, other, weights)


def test_a_model_continues_on_a_split_that_only_folds_its_own(trained, tmp_path):
    from lungfake.serving.store import WeightsStore
    from lungfake.training.trainer import served_starting_point

    weights = tmp_path / "weights"
    sha = split_sha256(trained["split_csv"])
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights, split_sha=sha)
    save_split(trained["rows"], WeightsStore.resolve(weights).earlier_split_csv("grouped", sha))
    moved = next(r for r in trained["rows"] if r.side == "test")
    folded = tmp_path / "folded.csv"
    save_split([replace(r, side="train") if r is moved else r for r in trained["rows"]], folded)
    longer = Recipe(**{**trained["recipe"].__dict__, "epochs": 2, "restart_epochs": (1,)})
    start = served_starting_point("tiny", "grouped", longer, folded, weights)
    assert start.split_sha256 == sha
    two_epochs = {k: v + v for k, v in trained["history"].items()}  # as if the second epoch had run
    export_trained(trained["model"], longer, "grouped", two_epochs, 1.0, folder=weights,
                   split_sha=split_sha256(folded), start=start)
    record = json.loads(WeightsStore.resolve(weights).history_json("tiny", "grouped").read_text())
    assert record["split_sha256"] == split_sha256(folded) and record["first_epochs"] == {"epochs": 1, "split_sha256": sha}
    third = Recipe(**{**longer.__dict__, "epochs": 3, "restart_epochs": (1, 2)})  # a further cycle on the folded split
    again = served_starting_point("tiny", "grouped", third, folded, weights)
    export_trained(trained["model"], third, "grouped", record["history"], 1.0, folder=weights, split_sha=split_sha256(folded),
                   start=again)
    record = json.loads(WeightsStore.resolve(weights).history_json("tiny", "grouped").read_text())
    assert record["first_epochs"] == {"epochs": 1, "split_sha256": sha}  # still says where the first epoch was trained


def test_a_cycle_may_train_at_a_larger_input_size():
    recipe = Recipe("tiny", train_size=32, epochs=10, restart_epochs=(4, 8), restart_train_sizes=(32, 48))
    assert [recipe.train_size_at(e) for e in (0, 3, 4, 7, 8, 9)] == [32, 32, 32, 32, 48, 48]
    assert recipe.last_train_size == 48
    stopped_at_eight = Recipe(**{**recipe.__dict__, "epochs": 8, "restart_epochs": (4,), "restart_train_sizes": ()})
    assert recipe.same_schedule_until(stopped_at_eight, 8)
    assert not recipe.same_schedule_until(Recipe(**{**stopped_at_eight.__dict__, "restart_train_sizes": (40,)}), 8)


def test_a_late_cycle_may_climb_to_a_lower_peak_learning_rate():
    from lungfake.errors import TrainingError
    from lungfake.reports.model_card import model_recipe_sentence
    from lungfake.serving.registry import ModelEntry
    from lungfake.training.trainer import learning_rate_schedule

    recipe = Recipe("tiny", train_size=32, epochs=10, restart_epochs=(4, 8), restart_learning_rate=1e-3,
                    restart_learning_rates=(1e-3, 2e-4), restart_warmup_epochs=1)
    assert [recipe.peak_learning_rate_at(e) for e in (0, 4, 7, 8, 9)] == [recipe.learning_rate, 1e-3, 1e-3, 2e-4, 2e-4]
    assert float(learning_rate_schedule(recipe, 10, 8)(10)) == pytest.approx(2e-4)
    assert float(learning_rate_schedule(recipe, 10, 4)(10)) == pytest.approx(1e-3)
    # A model trained with one restart at the shared rate is the first part of this recipe...
    stopped_at_eight = Recipe(**{**recipe.__dict__, "epochs": 8, "restart_epochs": (4,), "restart_learning_rates": ()})
    assert recipe.same_schedule_until(stopped_at_eight, 8)
    # ...but not one whose first restart climbed elsewhere.
    assert not recipe.same_schedule_until(Recipe(**{**stopped_at_eight.__dict__, "restart_learning_rates": (5e-4,)}), 8)
    assert not recipe.same_schedule_until(Recipe(**{**stopped_at_eight.__dict__, "restart_learning_rate": 5e-4}), 8)
    # The shared rate does not matter where every restart names its own.
    assert Recipe(**{**recipe.__dict__, "restart_learning_rate": 7e-4}).same_schedule_until(stopped_at_eight, 8)
    entry = ModelEntry("tiny", "tiny.tflite", "0" * 64, 32, CLASS_NAMES, "conv", "scale_0_1", "grouped",
                       recipe={"arch": "tiny", "input_size": 32, "epochs": 10, "restart_epochs": [4, 8],
                               "restart_learning_rates": [1e-3, 2e-4]})
    assert "warm restart of the learning rate at epoch 4 (peak 0.001), 8 (peak 0.0002)" in model_recipe_sentence(entry)
    with pytest.raises(TrainingError, match="one value per restart"):
        Recipe(**{**recipe.__dict__, "restart_learning_rates": (1e-3,)}).peak_learning_rate_at(9)


def test_a_served_model_continues_at_a_larger_input_size(trained, tmp_path):
    from lungfake.training.trainer import served_starting_point

    weights = tmp_path / "weights"
    sha = split_sha256(trained["split_csv"])
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights, split_sha=sha)
    larger = Recipe(**{**trained["recipe"].__dict__, "epochs": 2, "restart_epochs": (1,), "restart_train_sizes": (48,)})
    start = served_starting_point("tiny", "grouped", larger, trained["split_csv"], weights)
    model, history, finished = train(trained["data"], trained["rows"], larger, tmp_path / "run", start=start)
    assert finished and model.input_shape[1:] == (48, 48, 3) and history["loss"][0] == trained["history"]["loss"][0]
    served = trained["model"].get_weights()
    assert [w.shape for w in model.get_weights()] == [w.shape for w in served]  # the same network, only bigger tiles
    export_trained(model, larger, "grouped", history, 1.0, folder=weights, split_sha=sha, start=start)
    entry = load_registry(weights)["tiny"]
    assert entry.input_size == 48
    LoadedModel.load(entry, weights)  # checks the new sha256 and the 48 px input against the registry
    from lungfake.reports.model_card import model_recipe_sentence

    assert "at 32x32 px, its last 1 epochs at 48x48 px" in model_recipe_sentence(entry)


def test_a_served_model_can_be_served_at_another_size(trained, tmp_path):
    from lungfake.reports.model_card import model_recipe_sentence
    from lungfake.serving.registry import update_calibration
    from lungfake.training.trainer import at_input_size, serve_at_input_size

    weights = tmp_path / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights,
                   split_sha=split_sha256(trained["split_csv"]))
    update_calibration("tiny", 1.3, {"threshold": 0.9}, weights)
    serve_at_input_size("tiny", 40, weights)
    entry = load_registry(weights)["tiny"]
    served = LoadedModel.load(entry, weights)  # checks the new sha256 and the input shape against the registry
    assert entry.input_size == 40 and entry.temperature == 1.0 and entry.low_confidence == {}  # evaluate refits
    same_weights_at_40 = at_input_size(trained["model"], trained["recipe"], 40)
    tiles = np.stack([to_model_input(texture(seed, 50), 40) for seed in range(3)])
    np.testing.assert_allclose(served.forward(tiles)[1], same_weights_at_40.predict(tiles, verbose=0), atol=1e-3)
    assert "at 32x32 px (served at 40x40 px" in model_recipe_sentence(entry)


def test_a_single_cycle_drops_the_recipes_restarts():
    from lungfake.cli import build_parser, train_recipe
    from lungfake.training.trainer import DEFAULT_RECIPES

    args = build_parser().parse_args(["train", "--arch", "mobilenetv2", "--epochs", "40", "--single-cycle"])
    recipe = train_recipe(args)
    assert DEFAULT_RECIPES["mobilenetv2"].restart_epochs, "the test needs a default recipe with restarts"
    assert (recipe.epochs, recipe.restart_epochs, recipe.restart_train_sizes) == (40, (), ())
    assert recipe.segment(39) == (0, 40) and recipe.last_train_size == recipe.train_size
    kept = train_recipe(build_parser().parse_args(["train", "--arch", "mobilenetv2"]))
    assert kept == DEFAULT_RECIPES["mobilenetv2"]


def test_a_restart_or_resize_needs_the_trained_keras_model_the_served_file_came_from(trained, tmp_path):
    from lungfake.errors import TrainingError
    from lungfake.training.trainer import serve_at_input_size, served_starting_point, trained_model_path

    weights = tmp_path / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights,
                   split_sha=split_sha256(trained["split_csv"]))
    longer = Recipe(**{**trained["recipe"].__dict__, "epochs": 2, "restart_epochs": (1,)})
    keras_file = trained_model_path("tiny", "grouped")
    keras_file.write_bytes(keras_file.read_bytes() + b"x")
    with pytest.raises(TrainingError, match="is not the one the served file was exported from"):
        served_starting_point("tiny", "grouped", longer, trained["split_csv"], weights)
    keras_file.unlink()
    with pytest.raises(TrainingError, match="is missing"):
        serve_at_input_size("tiny", 40, weights)


def test_export_writes_the_served_file_of_a_keras_model_and_keeps_the_calibration(trained, tmp_path):
    from lungfake import cli
    from lungfake.serving.registry import update_calibration
    from lungfake.training.trainer import trained_model_path

    weights = tmp_path / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights,
                   split_sha=split_sha256(trained["split_csv"]))
    update_calibration("tiny", 1.3, {"threshold": 0.9}, weights)
    restored = tmp_path / "restored.keras"
    restored.write_bytes(trained_model_path("tiny", "grouped").read_bytes())
    trained_model_path("tiny", "grouped").unlink()
    (weights / "tiny.tflite").unlink()
    assert cli.main(["export", "--arch", "tiny", "--keras", str(restored), "--weights-dir", str(weights)]) == 0
    entry = load_registry(weights)["tiny"]
    assert entry.temperature == 1.3 and entry.low_confidence == {"threshold": 0.9}
    LoadedModel.load(entry, weights)
    history = json.loads((weights / "history" / "tiny_grouped.json").read_text())
    assert history["keras_sha256"] == sha256_of(trained_model_path("tiny", "grouped")) == sha256_of(restored)
    assert cli.main(["export", "--arch", "tiny", "--keras", str(tmp_path / "none.keras"), "--weights-dir", str(weights)]) == 2


def test_explanations_measures_records_and_captions_the_overlay(trained, capsys):
    from lungfake import cli
    from lungfake.training.architectures import build_model, randomise_top

    weights = trained["base"] / "weights"
    export_trained(trained["model"], trained["recipe"], "grouped", trained["history"], 1.0, folder=weights,
                   split_sha=split_sha256(trained["split_csv"]))
    Evaluator(trained["data"], weights).evaluate_model("tiny", "grouped")
    assert cli.main(["explanations", "--arch", "tiny", "--data-dir", str(trained["data"]), "--weights-dir", str(weights),
                     "--val-every", "1", "--test-every", "1"]) == 0
    printed = capsys.readouterr().out
    result = EvaluationMetrics.read(weights / "metrics" / "tiny_grouped.json").explanation
    assert f"tiny: chose {result['method']}" in printed and "randomisation Spearman" in printed and "test:" in printed
    # stride 1: nothing to stitch; the file gives conv1's activations, so Score-CAM is a candidate
    assert set(result["candidates"]) == {"gradcam", "scorecam"} and result["method"] in result["candidates"]
    test = EvaluationMetrics.read(weights / "metrics" / "tiny_grouped.json").explanation_figures("test")
    assert test.tiles == sum(r.side == "test" for r in trained["rows"]) and test.cells == 32
    assert test.randomisation_spearman is not None  # the trained Keras model was at hand
    assert len(test.deletion_curve) == 11 and test.deletion_curve[0] >= test.deletion_curve[-1] - 1
    entry = load_registry(weights)["tiny"]
    assert entry.explanation_method == result["method"] and entry.trust.tiles == sum(r.side == "val" for r in trained["rows"])
    tile = read_image_file(next(trained["data"].glob("nested/lung_aca/*.jpeg")))
    scorer = Scorer.load("all", weights)
    scored = scorer.score([tile], explain=True)[0].models["tiny"]
    assert scored.overlay_trust == entry.trust and entry.trust.caption() in scored.overlay_caption
    assert scored.overlay_is_evidence == entry.trust.is_evidence and entry.trust.tile_specific is not None
    # the precise overlay, offered on request: a perturbation method, chosen and measured like the default one
    precise = result["precise"]
    assert set(precise["candidates"]) == {"occlusion", "rise"} and entry.precise_method == precise["method"]
    assert "for its precise overlay" in printed
    exact = scorer.score([tile], explain=True, precise=True)[0].models["tiny"]
    assert exact.overlay_trust == entry.as_precise().trust and exact.overlay_trust.method == precise["method"]
    assert exact.probabilities == scored.probabilities and not np.allclose(exact.heatmap, scored.heatmap)

    # evaluate again: the same weights keep their overlay figures; figures of other weights are dropped
    metrics_file = weights / "metrics" / "tiny_grouped.json"
    Evaluator(trained["data"], weights).evaluate_model("tiny", "grouped")
    assert EvaluationMetrics.read(metrics_file).explanation == result
    payload = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({**payload, "weights_sha256": "f" * 64}))
    Evaluator(trained["data"], weights).evaluate_model("tiny", "grouped")
    assert EvaluationMetrics.read(metrics_file).explanation is None

    model = build_model("tiny", 32)
    before = [w.copy() for w in model.get_layer("conv1").get_weights()]
    last = model.get_layer("last_conv").get_weights()[0].copy()
    assert randomise_top(model, "last_conv") == 2  # last_conv and the head
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], before[0])
    assert not np.allclose(model.get_layer("last_conv").get_weights()[0], last)
