"""The predict command and Grad-CAM with a tiny model registered in a temporary weights folder."""
import json

import numpy as np
from PIL import Image

from lungfake import cli
from lungfake.cam import GradcamExplainer, overlay
from lungfake.inference import LoadedModel
from lungfake.registry import load_registry
from tests.helpers import texture


def test_predict_json_lines_and_errors(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
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


def test_predict_batches_and_unknown_model(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
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


def test_predict_notes_that_a_large_image_is_better_mapped_as_a_region(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
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
    from lungfake.registry import load_model

    entry = load_registry(tiny_weights)["tiny"]
    model = load_model(entry, tiny_weights)
    before = [w.copy() for w in model.get_weights()]
    explainer = GradcamExplainer(LoadedModel(entry, model))
    tile = texture(9, 50)
    heat = explainer.heatmap(tile, "lung_aca")
    assert heat.shape == (32, 32) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.get_layer("probabilities").activation.__name__ == "softmax"  # the model keeps its softmax
    blended = overlay(tile, heat, 0.5)
    assert blended.shape == tile.shape and blended.dtype == np.uint8
    assert np.array_equal(overlay(tile, heat, 0.0), tile)


def test_traced_gradcam_matches_tf_keras_vis_on_the_plain_model(tiny_weights):
    """The traced view changes speed only: heatmaps equal tf-keras-vis's on the model as saved."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from lungfake.images import to_model_input
    from lungfake.registry import load_model

    entry = load_registry(tiny_weights)["tiny"]
    model = load_model(entry, tiny_weights)
    explainer = GradcamExplainer(LoadedModel(entry, model))
    plain = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    for seed, class_name in ((1, "lung_n"), (2, "lung_scc")):
        tile = texture(seed, 40)
        reference = plain(CategoricalScore([entry.class_names.index(class_name)]), to_model_input(tile, 32)[None],
                          penultimate_layer=entry.gradcam_layer, seek_penultimate_conv_layer=False, normalize_cam=False)[0]
        reference = np.maximum(reference, 0) / max(np.maximum(reference, 0).max(), 1e-12)
        np.testing.assert_allclose(explainer.heatmap(tile, class_name), reference, atol=1e-5)


def test_prediction_and_gradcam_share_one_trace_of_the_backbone(tiny_weights):
    from lungfake.images import to_model_input
    from lungfake.registry import load_model

    entry = load_registry(tiny_weights)["tiny"]
    loaded = LoadedModel(entry, load_model(entry, tiny_weights))
    tiles = np.stack([to_model_input(texture(seed, 40), 32) for seed in range(5)])
    _, one = loaded.forward(tiles[:1])
    _, five = loaded.forward(tiles)
    GradcamExplainer(loaded).heatmap(texture(3, 40), "lung_n")
    assert loaded.feature_map.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(one[0], five[0], atol=1e-6)
    np.testing.assert_allclose(five, loaded.model.predict(tiles, verbose=0), atol=1e-5)  # the head as the model has it
