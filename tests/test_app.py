"""AppTest over every page of the Streamlit app, on the committed weights and metrics."""
import pytest
from streamlit.testing.v1 import AppTest

from lungfake.charts import PROTOCOL_LABELS
from lungfake.evaluation import load_all_metrics
from lungfake.registry import load_registry
from tests.helpers import DATA_DIR, REPO, needs_data

APP = str(REPO / "streamlit_app.py")
MODEL_LOAD_TIMEOUT = 180  # the first run loads both models and builds Grad-CAM


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=MODEL_LOAD_TIMEOUT)
    at.run()
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.success] + [m.value for m in at.error]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


@pytest.mark.parametrize("page", ["pages/score.py", "pages/dashboard.py", "pages/about.py"])
def test_every_page_renders_without_exception(page):
    at = _app()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title


def test_scoring_page_shows_disclaimer_and_waits_for_upload():
    at = _app()
    assert "Research use only" in at.warning[0].value
    assert any("Upload a tile" in i.value for i in at.info)


def test_dashboard_switches_model_and_protocol():
    at = _app()
    at.switch_page("pages/dashboard.py").run()
    evaluated = load_all_metrics()
    for name in at.selectbox[0].options:
        at.selectbox[0].set_value(name).run()
        arch = next(a for (a, _), m in evaluated.items() if m["display_name"] == name)
        for protocol in [p for a, p in evaluated if a == arch]:
            at.radio[0].set_value(PROTOCOL_LABELS[protocol]).run()
            assert not at.exception
            accuracy = next(m for m in at.metric if m.label == "Accuracy")
            assert accuracy.value == f"{evaluated[(arch, protocol)]['accuracy']:.1%}"
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
    assert sum(c.startswith("Grad-CAM") for c in captions) == served
    assert captions.count("Uploaded tile") == 1
    assert len(at.get("download_button")) == 2
    at.toggle[0].set_value(True).run()  # test-time augmentation rescored the tile
    assert not at.exception and len([m for m in at.metric if m.label == "Prediction"]) == len(predictions)


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


def test_reruns_keep_tensorflows_optimised_kernels(monkeypatch):
    """Streamlit's after-run cleanup calls keras.backend.clear_session(), which would make every upload
    re-optimise the traced models (seconds of CPU) and let sessions wipe each other's kernels."""
    from tensorflow.python.eager import context

    clears = []
    clear = context.Context.clear_kernel_cache
    monkeypatch.setattr(context.Context, "clear_kernel_cache", lambda self: clears.append(1) or clear(self))
    at = _app()
    at.file_uploader[0].upload("tile.png", _a_tile_png(), "image/png").run()
    at.switch_page("pages/dashboard.py").run()
    assert not at.exception
    assert clears == []


def test_loaded_models_are_kept_out_of_the_garbage_collectors_scans():
    """Streamlit collects garbage after every run; scanning the models' objects each time cost 0.5 s."""
    import gc

    from pages.common import scorer

    at = _app()
    at.file_uploader[0].upload("tile.png", _a_tile_png(), "image/png").run()
    assert not at.exception
    tracked = {id(o) for o in gc.get_objects()}
    assert all(id(served.loaded.model) not in tracked for served in scorer().served)


def _copy_weights(tmp_path, tamper: str | None = None):
    import shutil

    copy = tmp_path / "weights"
    shutil.copytree(REPO / "weights", copy)
    if tamper:
        with open(copy / tamper, "ab") as handle:
            handle.write(b"tampered")
    return copy


@pytest.mark.parametrize("tamper", ["mobilenetv2.keras", "ood_reference.npz"])
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
    for page in ("pages/score.py", "pages/dashboard.py", "pages/about.py"):
        at = AppTest.from_file(APP, default_timeout=MODEL_LOAD_TIMEOUT)
        at.run()
        at.switch_page(page).run()
        if page == "pages/score.py":
            at.file_uploader[0].upload("tile.png", _a_tile_png(), "image/png").run()
        assert not at.exception
        assert at.error, page
        assert all("Traceback" not in e.value and str(tmp_path) not in e.value for e in at.error)


def _a_tile_png() -> bytes:
    import io

    from PIL import Image

    from tests.helpers import texture

    buffer = io.BytesIO()
    Image.fromarray(texture(1, 224)).save(buffer, "PNG")
    return buffer.getvalue()
