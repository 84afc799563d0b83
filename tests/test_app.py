"""AppTest over every page of the Streamlit app, on the committed weights and metrics."""
import pytest
from streamlit.testing.v1 import AppTest

from lungfake.charts import PROTOCOL_LABELS
from lungfake.evaluation import load_all_metrics
from tests.conftest import DATA_DIR, REPO, needs_data

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
            accuracy = next(m for m in at.metric if m.label == "Accuracy (3-class)")
            assert accuracy.value == f"{evaluated[(arch, protocol)]['accuracy']:.1%}"
    at.toggle[0].set_value(True).run()
    assert not at.exception


@needs_data
def test_upload_real_tile_shows_both_predictions_and_overlays():
    at = _app()
    tile = DATA_DIR / "lung_scc" / "lungscc1.jpeg"
    at.file_uploader[0].upload(tile.name, tile.read_bytes(), "image/jpeg").run()
    assert not at.exception and not at.error
    predictions = [m for m in at.metric if m.label == "Prediction"]
    assert len(predictions) == 2
    assert all(p.value in {"Benign lung tissue", "Lung adenocarcinoma", "Lung squamous cell carcinoma"} for p in predictions)
    captions = [caption for image in at.image for caption in image.captions]
    assert sum(c.startswith("Grad-CAM") for c in captions) == 2
    assert captions.count("Uploaded tile") == 2
    assert len(at.get("download_button")) == 2


def test_corrupt_upload_shows_error_then_next_upload_works():
    at = _app()
    at.file_uploader[0].upload("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg").run()
    assert not at.exception
    assert at.error and "export the tile again" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    at.file_uploader[0].upload("empty.png", b"", "image/png").run()
    assert at.error and "empty" in at.error[0].value
