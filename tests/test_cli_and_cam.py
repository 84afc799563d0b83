"""The predict command and Grad-CAM with a tiny model registered in a temporary weights folder."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from lungfake import cli
from lungfake.classes import CLASS_NAMES
from lungfake.explain.cam import OverlayExplainer, overlay
from lungfake.serving.images import to_model_input
from lungfake.serving.inference import LoadedModel
from lungfake.serving.model_file import CLASS_MAPS
from lungfake.serving.registry import ModelEntry, load_registry
from tests.helpers import REPO, store_with_ood_limits, texture


@pytest.fixture(scope="module")
def passing_weights(tiny_weights, tmp_path_factory):
    """The tiny store with a screen that passes every image: these tests are about the command, not the screen (whose
    limits, fitted on an untrained model's features, would refuse some of the tiles at random)."""
    inf = float("inf")
    return store_with_ood_limits(tiny_weights, tmp_path_factory.mktemp("passing") / "w", inf, inf, inf)


def test_predict_json_lines_and_errors(passing_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(passing_weights))
    good = tmp_path / "tile.png"
    Image.fromarray(texture(5, 300)).convert("RGBA").save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not finished")
    code = cli.main(["predict", str(good), str(bad), str(tmp_path / "missing.png"), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [line["file"] for line in lines] == [str(good), str(bad), str(tmp_path / "missing.png")]
    scored = lines[0]["models"]["tiny"]
    assert set(scored["probabilities"]) == {"lung_n", "lung_aca", "lung_scc"}
    assert scored["predicted"] == max(scored["probabilities"], key=scored["probabilities"].get)
    assert "error" in lines[1] and "Traceback" not in lines[1]["error"]
    assert "cannot be opened" in lines[2]["error"]


def test_predict_batches_and_unknown_model(passing_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(passing_weights))
    files = []
    for i in range(5):
        files.append(tmp_path / f"t{i}.jpeg")
        Image.fromarray(texture(i, 40)).save(files[-1])
    assert cli.main(["predict", *map(str, files), "--batch-size", "2", "--model", "tiny"]) == 0
    captured = capsys.readouterr()
    assert sum(": tiny:" in line for line in captured.out.splitlines()) == 5 and "scored 4/5 files" in captured.err
    assert cli.main(["predict", str(files[0]), "--model", "resnet50"]) == 2
    assert "No model 'resnet50'" in capsys.readouterr().err


def test_predict_scores_every_image_under_a_folder_and_refuses_a_folder_without_one(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
    case = tmp_path / "case"
    (case / "slide 2").mkdir(parents=True)
    (case / ".thumbnails").mkdir()
    for i, path in enumerate([case / "b.png", case / "a.jpeg", case / "slide 2" / "c.TIF", case / ".thumbnails" / "x.png"]):
        Image.fromarray(texture(i, 40)).save(path)
    (case / "notes.txt").write_text("not a tile")
    assert cli.main(["predict", str(case), "--json"]) == 0
    scored = [json.loads(line)["file"] for line in capsys.readouterr().out.splitlines()]
    assert scored == [str(case / "a.jpeg"), str(case / "b.png"), str(case / "slide 2" / "c.TIF")]
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tmp_path / "empty")]) == 2
    assert "is a folder with no image files" in capsys.readouterr().err


def test_predict_notes_that_a_large_image_is_better_mapped_as_a_region(passing_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(passing_weights))
    tile, field = tmp_path / "tile.png", tmp_path / "field.png"
    Image.fromarray(texture(1, 224)).save(tile)
    Image.fromarray(texture(2, 1200)[:800]).save(field)
    assert cli.main(["predict", str(tile), str(field)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if ": NOTE: " in line]
    assert len(notes) == 1 and notes[0].startswith(f"{field}: NOTE: This image is larger")
    assert "`python -m lungfake region`" in notes[0] and "**" not in notes[0]


def test_tta_averages_the_eight_views_and_keeps_the_json_shape(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
    tile = tmp_path / "tile.png"
    Image.fromarray(texture(11, 64)).save(tile)
    assert cli.main(["predict", str(tile), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main(["predict", str(tile), "--json", "--tta"]) == 0
    averaged = json.loads(capsys.readouterr().out)
    assert set(averaged) == set(plain)
    assert averaged["models"]["tiny"]["probabilities"] != plain["models"]["tiny"]["probabilities"]


def test_cli_errors_end_in_a_message_not_a_traceback(tmp_path, capsys):
    assert cli.main(["audit", "--split", str(tmp_path / "missing.csv"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_gradcam_heatmap_and_overlay(tiny_weights):
    entry = load_registry(tiny_weights)["tiny"]
    explainer = OverlayExplainer(LoadedModel.load(entry, tiny_weights))
    tile = texture(9, 50)
    # the class whose map rises highest: an untrained model's map of another class can be negative everywhere, and
    # Grad-CAM's ReLU then leaves nothing (seen in CI)
    class_maps = explainer.loaded.run(to_model_input(tile, 32)[None].astype(np.float32))[CLASS_MAPS][0]
    brightest = entry.class_names[int(np.argmax(class_maps.max(axis=(0, 1))))]
    heat = explainer.heatmap(tile, brightest)
    assert heat.shape == (32, 32) and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    blended = overlay(tile, heat, 0.5)
    assert blended.shape == tile.shape and blended.dtype == np.uint8
    assert np.array_equal(overlay(tile, heat, 0.0), tile)
    assert not np.array_equal(blended, tile)


def _keras_and_served(tmp_path, float16: bool):
    """A tiny Keras model (random weights) and its served file, read back as the registry would describe it."""
    from lungfake.training.architectures import build_model
    from lungfake.training.export import write_served_model

    model = build_model("tiny", 32)
    path = write_served_model(model, "last_conv", tmp_path / "tiny.tflite", float16=float16)
    entry = ModelEntry("tiny", path.name, "0" * 64, 32, CLASS_NAMES, "last_conv", "lab_standardised", "grouped")
    return model, LoadedModel.from_file(entry, path)


def test_served_gradcam_equals_tf_keras_vis_gradcam_on_the_keras_model(tmp_path):
    """cam.py makes Grad-CAM from the served file's class maps, without a gradient: the same heatmap as tf-keras-vis's
    Gradcam on the Keras model, for every class, and the same probabilities and pooled features."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from lungfake.serving.images import to_model_input

    model, served = _keras_and_served(tmp_path, float16=False)
    reference_gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    explainer = OverlayExplainer(served)
    for seed, class_name in ((1, "lung_n"), (2, "lung_aca"), (3, "lung_scc")):
        pixels = to_model_input(texture(seed, 40), 32)[None]
        reference = reference_gradcam(CategoricalScore([CLASS_NAMES.index(class_name)]), pixels, penultimate_layer="last_conv",
                                      seek_penultimate_conv_layer=False, normalize_cam=False)[0]
        reference = np.maximum(reference, 0) / max(np.maximum(reference, 0).max(), 1e-12)
        np.testing.assert_allclose(explainer.heatmap(texture(seed, 40), class_name), reference, atol=1e-5)
    tiles = np.stack([to_model_input(texture(seed, 40), 32) for seed in range(5)])
    pooled, probabilities = served.forward(tiles)
    np.testing.assert_allclose(probabilities, model.predict(tiles, verbose=0), atol=1e-5)
    feature_map = keras.Model(model.input, model.get_layer("last_conv").output).predict(tiles, verbose=0)
    np.testing.assert_allclose(pooled, feature_map.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(served.forward(tiles[:1])[1][0], probabilities[0], atol=1e-6)  # any batch size


def test_float16_storage_of_large_tensors_stays_within_1e_3(tmp_path):
    """Tensors of FLOAT16_MIN_WEIGHTS values or more are stored as float16 and widened at load; smaller ones (all of
    the tiny model's) stay float32. With every tensor float16, the outputs move, but by less than 1e-3."""
    from ai_edge_litert.interpreter import Interpreter

    from lungfake.serving.images import to_model_input
    from lungfake.training.export import served_model_bytes, with_float16_weights

    (tmp_path / "full").mkdir()
    model, full = _keras_and_served(tmp_path / "full", float16=False)

    def weight_types(path):
        return {d["dtype"] for d in Interpreter(model_path=str(path)).get_tensor_details()}

    default = tmp_path / "default.tflite"
    default.write_bytes(served_model_bytes(model, "last_conv"))
    assert np.float16 not in weight_types(default)  # every tiny tensor is under the size that goes float16
    every = tmp_path / "every.tflite"
    every.write_bytes(with_float16_weights((tmp_path / "full" / "tiny.tflite").read_bytes(), 1))
    assert np.float16 in weight_types(every)
    tiles = np.stack([to_model_input(texture(seed, 40), 32) for seed in range(8)])
    half = LoadedModel.from_file(full.entry, every)
    difference = np.abs(half.forward(tiles)[1] - full.forward(tiles)[1]).max()
    assert 0 < difference < 1e-3
    np.testing.assert_allclose(half.run(tiles)["class_maps"], full.run(tiles)["class_maps"], rtol=1e-2, atol=1e-3)


def test_scoring_never_imports_tensorflow(tiny_weights):
    """A fresh server answers fast because the served files need only LiteRT: neither TensorFlow nor Keras is
    imported to load the models, score and explain (benchmarks/app_latency.py times it)."""
    code = ("import sys; from lungfake.scoring.scoring import Scorer; import numpy as np; "
            f"s = Scorer.load('all', __import__('pathlib').Path({str(tiny_weights)!r})); "
            "s.score([np.full((40, 40, 3), 128, np.uint8)], explain=True); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras_vis') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert run.stdout.strip().splitlines()[-1] == "[]"
