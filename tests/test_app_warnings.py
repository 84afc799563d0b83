"""The pages' warnings and refusals, through AppTest, on a tiny model whose out-of-distribution reference is set
to pass or fail every image: each test fails if its message is removed or shown for the wrong case."""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lungfake.reports.batch import MAX_TILES
from tests.helpers import REPO, he_like, store_with_ood_limits

APP = str(REPO / "streamlit_app.py")
INF = float("inf")
TIMEOUT = 60


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def _page(weights, monkeypatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(weights))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


@pytest.fixture(scope="module")
def plain_weights(tiny_weights, tmp_path_factory):
    return store_with_ood_limits(tiny_weights, tmp_path_factory.mktemp("p") / "w", INF, INF, INF)


@pytest.fixture(scope="module")
def shifted_weights(tiny_weights, tmp_path_factory):
    return store_with_ood_limits(tiny_weights, tmp_path_factory.mktemp("s") / "w", INF, -1.0, INF)


def _warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def test_the_score_page_cautions_on_tissue_unlike_lc25000s(shifted_weights, monkeypatch):
    at = _page(shifted_weights, monkeypatch)
    at.file_uploader[0].upload("t.png", _png(he_like(3, 64)), "image/png").run()
    assert not at.exception and not at.error
    caution = [w for w in _warnings(at) if "unlike LC25000's tiles" in w]
    assert len(caution) == 1 and "stain distance" in caution[0] and "trust them less" in caution[0]
    assert [m for m in at.metric if m.label == "Prediction"]  # shown, not tucked away


def test_the_score_page_shows_no_caution_for_tissue_like_lc25000s(plain_weights, monkeypatch):
    at = _page(plain_weights, monkeypatch)
    at.file_uploader[0].upload("t.png", _png(he_like(3, 64)), "image/png").run()
    assert not at.exception and not at.error
    assert not [w for w in _warnings(at) if "unlike LC25000" in w]


def test_the_score_page_leads_with_the_verdict_and_no_separate_low_confidence_warning(plain_weights, monkeypatch):
    """The untrained tiny model is about a third sure of each class, so two thirds sure of cancer: the verdict is a
    carcinoma, and with no margin chosen yet (and tissue like LC25000's) its subtype is given."""
    at = _page(plain_weights, monkeypatch)
    at.file_uploader[0].upload("t.png", _png(he_like(3, 64)), "image/png").run()
    verdict = at.session_state["tile_score"].verdict
    assert verdict.cancer and not verdict.subtype_uncertain
    assert at.success[0].value.startswith(f"### {verdict.headline}\n\nCancer (cancer probability ")
    assert not [w for w in _warnings(at) if "Low confidence" in w or "Subtype uncertain" in w]


def test_the_score_page_withholds_the_subtype_of_tissue_unlike_lc25000s(shifted_weights, monkeypatch):
    at = _page(shifted_weights, monkeypatch)
    at.file_uploader[0].upload("t.png", _png(he_like(3, 64)), "image/png").run()
    lead = [w for w in _warnings(at) if w.startswith("### ")]
    assert len(lead) == 1 and lead[0].startswith("### Carcinoma, subtype uncertain\n\nSubtype uncertain: the tissue is unlike")
    assert "probabilities of each subtype are shown below" in lead[0] and not at.success
    assert [m for m in at.metric if m.label == "Prediction"]  # the models' own calls stay visible


def test_the_batch_page_counts_shifted_tiles_and_uncertain_subtypes(shifted_weights, monkeypatch):
    at = _page(shifted_weights, monkeypatch, "pages/batch.py")
    at.file_uploader[0].upload("a.png", _png(he_like(1, 64)), "image/png")
    at.file_uploader[0].upload("b.png", _png(he_like(2, 64)), "image/png").run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files"] == "2" and metrics["Flagged"] == "100%" and metrics["Subtype uncertain"] == "2"
    assert metrics["Not H&E"] == "0" and metrics["Carcinoma, subtype uncertain"] == "2"
    table = at.dataframe[0].value
    assert table["unlike LC25000"].tolist() == [True, True] and table["subtype uncertain"].tolist() == [True, True]
    assert table["verdict"].tolist() == ["Carcinoma, subtype uncertain"] * 2


def test_the_batch_page_explains_a_zip_over_the_limit(plain_weights, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(MAX_TILES + 1):
            archive.writestr(f"{i}.png", b"x")
    at = _page(plain_weights, monkeypatch, "pages/batch.py")
    at.file_uploader[0].upload("many.zip", buffer.getvalue(), "application/zip").run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"many.zip holds {MAX_TILES + 1} images (at most {MAX_TILES}); split it."]
    assert not at.dataframe


def test_the_region_page_says_when_it_finds_no_tissue(plain_weights, monkeypatch):
    at = _page(plain_weights, monkeypatch, "pages/region.py")
    at.file_uploader[0].upload("glass.png", _png(np.full((800, 800, 3), 245, np.uint8)), "image/png").run()
    assert not at.exception
    assert len(at.error) == 1 and "no tissue was found" in at.error[0].value


def test_the_region_page_refuses_a_scale_that_makes_too_many_tiles(plain_weights, monkeypatch):
    at = _page(plain_weights, monkeypatch, "pages/region.py")
    at.radio[0].set_value("Microns per pixel").run()
    at.number_input[0].set_value(5.0).run()  # a 37-pixel tile: 3000 x 3000 pixels make 161 x 161 positions
    at.file_uploader[0].upload("big.png", _png(np.full((3000, 3000, 3), 200, np.uint8)), "image/png").run()
    assert not at.exception
    assert len(at.error) == 1 and "tiles (at most 20,000)" in at.error[0].value


def test_the_region_page_warns_when_its_tiles_are_unlike_lc25000s(shifted_weights, monkeypatch):
    from tests.test_region_batch_report import _region

    at = _page(shifted_weights, monkeypatch, "pages/region.py")
    at.radio[0].set_value("Microns per pixel").run()
    at.number_input[0].set_value(184 / 224).run()  # LC25000's tiles' scale: a tile is 224 pixels
    at.file_uploader[0].upload("r.png", _png(_region(1, 2)), "image/png").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(w.startswith("100% of the tissue tiles are H&E but unlike LC25000's") for w in _warnings(at))


@pytest.mark.parametrize("kind", ["evidence", "not about this tile", "unfaithful"])
def test_each_overlay_says_what_it_is_worth_and_one_that_failed_is_not_shown_as_evidence(kind, tiny_weights, tmp_path,
                                                                                         monkeypatch):
    from lungfake.serving.registry import OverlayTrust, update_explanation

    store = store_with_ood_limits(tiny_weights, tmp_path / "w", INF, INF, INF)
    passes = kind != "unfaithful"
    ratio = 3.2 if passes else 0.8
    other = 2.7 if kind == "evidence" else 1.1
    trust = OverlayTrust("gradcam", 100, 32, ratio, 0.05 if passes else -0.01, [0.02, 0.08] if passes else [-0.04, 0.02],
                         0.2, passes, other, [2.0, 4.0] if kind == "evidence" else [0.9, 1.3], 0.3 if kind == "evidence" else 0.8,
                         kind == "evidence", 20.0)
    update_explanation("tiny", "gradcam", trust.to_json(), store)
    at = _page(store, monkeypatch)
    at.file_uploader[0].upload("t.png", _png(he_like(3, 64)), "image/png").run()
    assert not at.exception and not at.error
    captions = [c for image in at.image for c in image.captions]
    cautions = [w for w in _warnings(at) if "Not evidence" in w or "Caution" in w]
    worth = f"{ratio:.1f} times as much as blurring a random fifth"
    if kind == "evidence":
        assert sum(worth in c and "32x32 cells" in c and "100 validation tiles" in c and
                   "2.7 times as much as blurring the fifth highlighted on another tile" in c for c in captions) == 1
        assert not cautions and not at.expander
    else:
        if kind == "unfaithful":
            assert len(cautions) == 1 and f"only {worth}" in cautions[0] and "does not show what the model used" in cautions[0]
        else:
            assert len(cautions) == 1 and "Caution, not evidence about this tile" in cautions[0]
            assert "1.1 times as much as blurring the fifth highlighted on another tile" in cautions[0]
        assert not any("times as much" in c for c in captions)
        assert [e.label for e in at.expander] == ["Show the overlay anyway"]
        assert at.expander[0].image[0].captions == ["Not evidence of what the model used"]
