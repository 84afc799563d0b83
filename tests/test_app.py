"""AppTest over every page of the Streamlit app, on the committed weights and metrics."""
import pytest
from streamlit.testing.v1 import AppTest

from lungfake.evaluation.evaluator import load_all_metrics
from lungfake.reports.charts import PROTOCOL_LABELS
from lungfake.serving.registry import load_registry
from tests.helpers import DATA_DIR, REPO, needs_data

APP = str(REPO / "streamlit_app.py")
pytestmark = pytest.mark.slow  # every page on the three committed models
MODEL_LOAD_TIMEOUT = 180  # the first run loads both models and builds Grad-CAM


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=MODEL_LOAD_TIMEOUT)
    at.run()
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.success] + [m.value for m in at.error]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


PAGES = ["pages/score.py", "pages/batch.py", "pages/region.py", "pages/slide.py", "pages/dashboard.py", "pages/error_browser.py",
         "pages/about.py"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(page):
    at = _app()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title


def test_scoring_page_shows_disclaimer_and_waits_for_upload():
    at = _app()
    assert "Research use only" in at.warning[0].value
    assert any("Upload a tile" in i.value for i in at.info)


def test_dashboard_and_model_card_say_whether_each_overlay_can_be_trusted():
    at = _app()
    at.switch_page("pages/dashboard.py").run()
    assert "Can the overlays be trusted?" in [h.value for h in at.header]
    grouped = [m for (a, p), m in load_all_metrics().items() if p == "grouped" and m.explanation_figures("test") is not None]
    evaluated = {m.display_name: m.explanation_figures("test") for m in grouped}
    evaluated.update({f"{m.display_name}, on request": m.precise_explanation_figures("test") for m in grouped
                      if m.precise_explanation_figures("test") is not None})
    table = next(d.value for d in at.dataframe if "Shown as evidence" in d.value.columns)
    assert sorted(table["Model"]) == sorted(evaluated)
    for _, row in table.iterrows():
        figures = evaluated[row["Model"]]
        # evidence: faithful and specific to the tile
        assert row["Shown as evidence"].startswith("yes" if figures.passes and figures.tile_specific else "no")
        assert row["Cells"] == f"{figures.cells}x{figures.cells}"
        assert row["Top fifth vs another tile's"].startswith(f"x{figures.specificity.own_vs_other_ratio:.1f}")
    failing = [name for name, f in evaluated.items() if not f.is_evidence]
    assert any(f"Not evidence on these tiles: {', '.join(failing)}." in m.value for m in at.markdown) == bool(failing)
    at.switch_page("pages/about.py").run()
    overlays = [m.value for m in at.markdown if m.value.startswith("Overlay: ")]
    assert len(overlays) == len(load_registry()) and all("grouped test tiles" in o for o in overlays)


def test_dashboard_switches_model_and_protocol():
    at = _app()
    at.switch_page("pages/dashboard.py").run()
    assert at.selectbox[0].value in {entry.display_name for entry in load_registry().values()}  # opens on a model
    evaluated = load_all_metrics()
    for name in at.selectbox[0].options:
        at.selectbox[0].set_value(name).run()
        arch = next(a for (a, _), m in evaluated.items() if m.display_name == name)
        for protocol in [p for a, p in evaluated if a == arch]:
            at.radio[0].set_value(PROTOCOL_LABELS[protocol]).run()
            assert not at.exception
            accuracy = next(m for m in at.metric if m.label == "Accuracy")
            assert accuracy.value == f"{evaluated[(arch, protocol)].accuracy:.1%}"
            if not evaluated[(arch, protocol)].is_baseline:
                assert any("Accuracy target" in caption.value for caption in at.caption)
    at.toggle[0].set_value(True).run()
    assert not at.exception


@needs_data
def test_upload_real_tile_shows_every_model_the_ensemble_and_overlays():
    served = len(load_registry())
    at = _app()
    tile = DATA_DIR / "lung_scc" / "lungscc1.jpeg"
    at.file_uploader[0].upload(tile.name, tile.read_bytes(), "image/jpeg").run()
    assert not at.exception and not at.error
    predictions = [m for m in at.metric if m.label == "Prediction"]
    assert len(predictions) == served + (served > 1)  # each model, and the ensemble
    assert all(p.value in {"Benign lung tissue", "Lung adenocarcinoma", "Lung squamous cell carcinoma"} for p in predictions)
    captions = [caption for image in at.image for caption in image.captions]
    # each model's overlay says what it is worth: as evidence under the map, or as a caution with the map on request
    trusted = sum(bool(e.trust and e.trust.is_evidence) for e in load_registry().values())
    assert sum("blurring the highlighted fifth" in c for c in captions) == trusted
    cautions = [w.value for w in at.warning if "Not evidence" in w.value or "Caution" in w.value
                or "not been measured" in w.value]
    assert len(cautions) == served - trusted
    assert captions.count("Not evidence of what the model used") == served - trusted
    assert captions.count("Uploaded tile") == 1
    assert len(at.get("download_button")) == 3
    at.toggle[0].set_value(True).run()  # test-time augmentation rescored the tile
    assert not at.exception and len([m for m in at.metric if m.label == "Prediction"]) == len(predictions)


@needs_data
def test_the_precise_overlays_come_on_request_each_with_what_it_is_worth():
    entries = [e for e in load_registry().values() if e.precise_method]
    at = _app()
    tile = DATA_DIR / "lung_aca" / "lungaca7.jpeg"
    at.file_uploader[0].upload(tile.name, tile.read_bytes(), "image/jpeg").run()
    overlays_before = len(at.image)
    assert "More precise overlays" in [h.value for h in at.subheader] and len(entries) == len(load_registry())
    at.button(key="precise_overlays").click().run()
    assert not at.exception and not at.error
    new_captions = [c for image in at.image[overlays_before:] for c in image.captions]
    warnings = [w.value for w in at.warning]
    for entry in entries:
        trust = entry.as_precise().trust
        shown = [c for c in new_captions + warnings if c.startswith(f"{entry.display_name}: ") and trust.caption() in c]
        assert len(shown) == 1, (entry.arch, new_captions, warnings)
    at.slider[0].set_value(0.6).run()  # another opacity: the precise overlays stay, not computed again
    assert not at.exception and "precise_overlays" not in [b.key for b in at.button]
    assert len(at.image) >= overlays_before + sum(e.as_precise().trust.is_evidence for e in entries)


@needs_data
def test_a_tile_at_another_magnification_says_how_the_models_saw_it():
    """A tile enlarged 1.6x has nuclei larger than LC25000's: the models score it shrunk, and say so."""
    import io

    from PIL import Image

    from lungfake.data.tiles import read_rgb
    from lungfake.evaluation.robustness import magnified

    buffer = io.BytesIO()
    Image.fromarray(magnified(read_rgb(DATA_DIR / "lung_aca" / "lungaca1.jpeg"), 1.6)).save(buffer, "PNG")
    at = _app()
    at.file_uploader[0].upload("large.png", buffer.getvalue(), "image/png").run()
    assert not at.exception
    notes = [c.value for c in at.caption if "scored it shrunk" in c.value]
    assert len(notes) == 1 and "the field around it continued by mirroring" in notes[0]


def test_corrupt_upload_shows_error_then_next_upload_works():
    at = _app()
    at.file_uploader[0].upload("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg").run()
    assert not at.exception
    assert at.error and "export the tile again" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    at.file_uploader[0].upload("empty.png", b"", "image/png").run()
    assert at.error and "empty" in at.error[0].value


def test_a_photograph_is_flagged_as_not_a_tile_and_its_output_is_tucked_away():
    import io

    from PIL import Image
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(buffer, "JPEG")
    at = _app()
    at.file_uploader[0].upload("holiday.jpg", buffer.getvalue(), "image/jpeg").run()
    assert not at.exception
    assert at.error and "does not look like a lung H&E tile" in at.error[0].value
    assert at.expander and at.expander[0].label == "Show the models' output anyway"
    served = len(load_registry())
    assert len([m for m in at.expander[0].metric if m.label == "Prediction"]) == served + (served > 1)


SERVER_SIDE = r"""
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=300)
at.run()
at.file_uploader[0].upload("tile.png", open(sys.argv[2], "rb").read(), "image/png").run()
assert not at.exception and [m for m in at.metric if m.label == "Prediction"], "not scored"
at.switch_page("pages/dashboard.py").run()
print(sorted(name for name in ("keras", "tensorflow", "tf_keras_vis") if name in sys.modules))
"""


def test_the_servers_process_never_imports_keras_so_streamlits_clear_session_has_nothing_to_clear(tmp_path):
    """After every run Streamlit calls keras.backend.clear_session() if Keras is imported, which empties
    TensorFlow's kernel cache: every upload re-optimised every model (about 4 s). The models live in their own
    process (lungfake.scoring.process), so the server's process, here a fresh one, never imports them."""
    import subprocess
    import sys

    (tmp_path / "tile.png").write_bytes(_a_tile_png())
    run = subprocess.run([sys.executable, "-c", SERVER_SIDE, APP, str(tmp_path / "tile.png")], capture_output=True,
                         text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


def _copy_weights(tmp_path, tamper: str | None = None):
    import shutil

    copy = tmp_path / "weights"
    shutil.copytree(REPO / "weights", copy)
    if tamper:
        with open(copy / tamper, "ab") as handle:
            handle.write(b"tampered")
    return copy


@pytest.mark.parametrize("tamper", ["mobilenetv2.tflite", "ood_reference.npz"])
def test_tampered_weights_are_refused_with_a_clear_message(tmp_path, monkeypatch, tamper):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(_copy_weights(tmp_path, tamper)))
    at = AppTest.from_file(APP, default_timeout=MODEL_LOAD_TIMEOUT)
    at.run()
    at.file_uploader[0].upload("tile.png", _a_tile_png(), "image/png").run()
    assert not at.exception
    message = at.error[0].value
    assert "does not match the registry" in message and "refusing to load" in message
    assert "Traceback" not in message and str(tmp_path) not in message and "/" not in message


def test_a_missing_registry_is_explained_without_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    slides = REPO.parent / "shared" / "data" / "slides"
    monkeypatch.setenv("LUNGFAKE_SLIDES_DIR", str(slides))
    for page in PAGES:
        if page == "pages/slide.py" and not (slides / "cmu_small_region.svs").is_file():
            continue  # the page needs a slide before it needs the models
        at = AppTest.from_file(APP, default_timeout=MODEL_LOAD_TIMEOUT)
        at.run()
        at.switch_page(page).run()
        if page in ("pages/score.py", "pages/batch.py", "pages/region.py"):
            at.file_uploader[0].upload("tile.png", _a_tile_png(), "image/png").run()
        if page == "pages/slide.py":
            at.radio[0].set_value(at.radio[0].options[1]).run()
            at.selectbox[0].set_value(slides / "cmu_small_region.svs").run()
            at.button[0].click().run()
        assert not at.exception
        assert at.error, page
        assert all("Traceback" not in e.value and str(tmp_path) not in e.value for e in at.error)


def _a_tile_png(seed: int = 1, width: int = 224, height: int = 224) -> bytes:
    import io

    from PIL import Image

    from tests.helpers import texture

    buffer = io.BytesIO()
    Image.fromarray(texture(seed, max(width, height))[:height, :width]).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_field_larger_than_a_tile_is_scored_and_pointed_to_the_region_page():
    at = _app()
    at.file_uploader[0].upload("tile.png", _a_tile_png(), "image/png").run()
    assert not any("Map a region" in i.value for i in at.info)
    at.file_uploader[0].upload("field.png", _a_tile_png(2, 1400, 900), "image/png").run()
    assert not at.exception
    assert any("larger than the 768-pixel photographs" in i.value for i in at.info)
    assert at.metric  # still scored: the hint advises, it does not refuse
    # Its button hands the image to the region page: tests/test_browser.py clicks it (AppTest reruns every page
    # through the entry point once, which spends a button's click before the page sees it).
    assert [b.label for b in at.button] == ["Map this image as a region"]


def test_batch_page_scores_readable_files_and_keeps_a_row_for_the_unreadable_one():
    at = _app()
    at.switch_page("pages/batch.py").run()
    uploader = at.file_uploader[0]
    uploader.upload("a.png", _a_tile_png(1), "image/png")
    uploader.upload("b.png", _a_tile_png(2), "image/png")
    uploader.upload("broken.jpg", b"\xff\xd8 not a jpeg", "image/jpeg").run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files"] == "3" and metrics["Unreadable"] == "1"
    table = at.dataframe[0].value
    assert list(table["file"]) == ["a.png", "b.png", "broken.jpg"] and table["error"].iloc[2]
    assert len(at.get("download_button")) == 3
    at.selectbox[0].set_value("Unreadable only").run()
    assert list(at.dataframe[0].value["file"]) == ["broken.jpg"]


@needs_data
def test_region_page_maps_a_region_built_from_real_tiles():
    import io

    import numpy as np
    from PIL import Image

    from lungfake.reports.region import LC25000_TILE_MICRONS

    tiles = [np.asarray(Image.open(DATA_DIR / folder / f"{folder.replace('_', '')}{n}.jpeg").convert("RGB"))
             for folder in ("lung_aca", "lung_n") for n in (1, 2)]
    tissue = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    canvas = np.full((448 + 200, 448 + 200, 3), 245, np.uint8)
    canvas[:448, :448] = tissue
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG")
    at = _app()
    at.switch_page("pages/region.py").run()
    at.radio[0].set_value("Microns per pixel").run()
    at.number_input[0].set_value(round(LC25000_TILE_MICRONS / 224, 3)).run()
    assert any("a tile is 224 pixels" in c.value for c in at.caption)
    at.file_uploader[0].upload("region.png", buffer.getvalue(), "image/png").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # 4x4 positions at half-tile overlap, less the corner one that is three quarters glass
    assert "15 tissue tiles of 224 px" in at.success[0].value
    shares = [int(m.value.rstrip("%")) for m in at.metric if m.value.endswith("%")]
    assert len(shares) == 3 and 98 <= sum(shares) <= 102
    captions = [c for image in at.image for c in image.captions]
    assert any("class probabilities over the tissue" in c for c in captions)
    assert sum("%" in c for c in captions) >= len(load_registry())
    assert len(at.get("download_button")) == 3
    at.selectbox[0].set_value(next(iter(load_registry()))).run()  # one model's map instead of the ensemble's
    assert not at.exception


@pytest.mark.parametrize("with_data", [True, False])
def test_error_browser_shows_a_cells_tiles_and_one_tile_with_every_model(monkeypatch, with_data):
    """With the LC25000 folder, and without it (as on Community Cloud), from the committed sprite."""
    from lungfake.data import tiles as data

    if with_data and not (DATA_DIR / "lung_n").is_dir():
        pytest.skip(f"LC25000 lung data not found at {DATA_DIR}")
    if not with_data:
        monkeypatch.setenv("LC25000_DIR", "/nonexistent")
        monkeypatch.setattr(data, "SHARED_DATA_DIR", data.Path("/nonexistent"))
    at = _app()
    at.switch_page("pages/error_browser.py").run()
    assert not at.exception and not at.error
    true_box, predicted_box = at.selectbox[1], at.selectbox[2]
    assert true_box.value != predicted_box.value  # opens on the busiest error cell
    heading = at.subheader[0].value
    assert int(heading.split()[0]) > 0
    families = next(c.value for c in at.caption if c.value.startswith("From "))
    assert "test families" in families and " of its " in families  # the cell's errors, family by family
    assert bool(at.info) == (not with_data)
    at.selectbox[3].set_value(at.selectbox[3].options[-1]).run()
    assert not at.exception
    captions = [c for image in at.image for c in image.captions] + [w.value for w in at.warning]
    assert sum("times as much as blurring" in c for c in captions) == len(load_registry())  # every overlay says its worth
    predicted_box.set_value(true_box.value).run()  # a correct cell: the sprite has only tiles some model got wrong
    assert not at.exception and (at.image or not with_data)
