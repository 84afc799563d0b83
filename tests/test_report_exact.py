"""A case report, exactly: a fixed set of scores, images, warnings and models makes this page and no other
(tests/data/report_golden.html). Regenerate it only for a change meant to alter what reports say, and read the
diff: `LUNGFAKE_WRITE_GOLDEN=1 pytest tests/test_report_exact.py`."""
import datetime as dt
import os

import numpy as np
import pytest

from lungfake.reports import case_report as report
from lungfake.reports.case_report import CaseReport, image_uri
from lungfake.scoring.scoring import ImageScore, ModelScore
from lungfake.serving.ood import OodVerdict
from lungfake.serving.registry import EnsembleCalibration, ModelEntry, OverlayTrust
from tests.helpers import REPO

GOLDEN = REPO / "tests" / "data" / "report_golden.html"
CLASSES = ("lung_n", "lung_aca", "lung_scc")


def _score(name: str, verdict: OodVerdict, first, second) -> ImageScore:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = (200, 120, 180)
    heatmap = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    # a's overlay passed the faithfulness and tile-specific tests on validation tiles, b's failed: b's is left out with
    # the reason
    trust = {"a": OverlayTrust("gradcam-stitched", 100, 8, 3.8, 0.09, [0.05, 0.13], 0.12, True, 2.6, [1.9, 4.1], 0.23,
                               True, 90.0),
             "b": OverlayTrust("gradcam", 100, 7, 0.9, -0.01, [-0.06, 0.04], 0.7, False)}
    models = {arch: ModelScore(arch, arch.upper(), dict(zip(CLASSES, p)), arch[0] * 64, 0.8, heatmap, trust[arch])
              for arch, p in (("a", first), ("b", second))}
    return ImageScore(name, rgb, models, verdict, EnsembleCalibration(1.0, 0.9))


def _report() -> CaseReport:
    entry = ModelEntry("a", "a.keras", "a" * 64, 32, CLASSES, "last_conv", "lab_standardised", "grouped", "Model A",
                       temperature=0.8765)
    page = CaseReport("Batch report", "one.png, two.png", [entry])
    page.add_text("Predicted: 2 tiles.")
    page.add_warning("two.png: unreadable")
    page.add_table(["file", "model A"], [["one.png", "Lung adenocarcinoma (91%)"], ["two.png", ""]])
    page.add_images([(np.full((4, 6, 3), 128, np.uint8), "a grey field")], width=120)
    agreeing = OodVerdict(False, "lung H&E tissue", False, "")
    page.add_score(_score("one.png", agreeing, (0.05, 0.9, 0.05), (0.1, 0.8, 0.1)), opacity=0.5)
    shifted = OodVerdict(False, "lung H&E tissue", True, "stain distance 9.1, limit 8.2")
    page.add_score(_score("two.png", shifted, (0.7, 0.2, 0.1), (0.2, 0.3, 0.5)), heading="Second tile")
    refused = OodVerdict(True, "its colours and texture are unlike H&E-stained lung tissue", False, "")
    page.add_score(_score("three.png", refused, (0.4, 0.3, 0.3), (0.4, 0.3, 0.3)))
    return page


def test_a_case_report_is_exactly_the_committed_page(monkeypatch):
    monkeypatch.setattr(report, "app_version", lambda: "git 0123456789ab")
    page = _report().html(now=dt.datetime(2026, 12, 6, 3, 0, tzinfo=dt.UTC))
    if os.environ.get("LUNGFAKE_WRITE_GOLDEN"):
        GOLDEN.write_text(page)
    assert page == GOLDEN.read_text()


def test_the_golden_page_says_what_each_tile_needs():
    page = GOLDEN.read_text()
    assert page.count('<div class="warning">The models disagree.</div>') == 1  # only the second tile's models differ
    assert "H&amp;E tissue, but unlike LC25000's tiles: stain distance 9.1, limit 8.2" in page
    assert "Not a lung H&amp;E tile by the out-of-distribution check" in page
    # model a's overlay on each scored tile, as alt text and caption, with what it is worth; b's left out, with why
    assert page.count("blurring the highlighted fifth lowered this model&#x27;s confidence 3.8 times") == 2 * 2
    assert page.count("B: overlay left out. Overlay for ") == 2 and page.count("only 0.9 times as much") == 2
    assert "No class is given for it." in page and page.count('<p class="verdict">') == 2  # none for the refused tile
    assert '<p class="verdict"><strong>Lung adenocarcinoma</strong></p>' in page
    assert page.count("Subtype uncertain: ") == 1  # the second tile: unlike LC25000's tissue, and the models disagree
    assert "<td>Lung squamous cell carcinoma</td><td>33.3%" not in page  # the refused tile's table is not there
    assert "generated 2026-12-06 03:00:00 UTC" in page and "lungfake git 0123456789ab" in page


def test_an_image_is_embedded_as_a_jpeg_no_larger_than_asked():
    import base64
    import io

    from PIL import Image

    uri = image_uri(np.zeros((300, 900, 3), np.uint8), max_side=90)
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert image.format == "JPEG" and image.size == (90, 30)
    with Image.open(io.BytesIO(base64.b64decode(image_uri(np.zeros((40, 20, 4), np.uint8)).split(",", 1)[1]))) as image:
        assert image.mode == "RGB" and image.size == (20, 40)


def test_the_app_version_is_the_checkouts_commit_or_the_packages_version(monkeypatch):
    import subprocess

    report.app_version.cache_clear()
    assert report.app_version().startswith("git ") and len(report.app_version()) == 16
    report.app_version.cache_clear()

    def no_git(*args, **kwargs):
        raise subprocess.CalledProcessError(128, "git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert report.app_version().startswith("lungfake ")
    report.app_version.cache_clear()


@pytest.mark.parametrize("value, expected", [(0.123456, 0.1235), (0.99995, 1.0)])
def test_a_threshold_is_recorded_to_four_decimals(value, expected):
    from lungfake.evaluation.calibration_fitting import ConfidenceThreshold

    recorded = ConfidenceThreshold(value, value, value).to_json()
    assert recorded == {"threshold": expected, "val_coverage": expected, "val_accuracy": expected, "target_accuracy": 0.99}


def test_a_temperature_is_fitted_within_its_bounds():
    from lungfake.evaluation.calibration_fitting import fit_temperature

    certain_and_wrong = np.tile([0.999999, 0.000001], (20, 1))
    assert fit_temperature(certain_and_wrong, np.ones(20, int)) == pytest.approx(20.0, rel=1e-3)
    certain_and_right = np.tile([0.6, 0.4], (20, 1))
    assert fit_temperature(certain_and_right, np.zeros(20, int)) == pytest.approx(0.05, rel=1e-3)


def test_a_batch_report_holds_the_table_the_errors_and_the_counts(monkeypatch):
    from lungfake.reports.batch import BatchRow, batch_report

    monkeypatch.setattr(report, "app_version", lambda: "git 0123456789ab")
    agreeing = OodVerdict(False, "lung H&E tissue", False, "")
    rows = [BatchRow("one.png", _score("one.png", agreeing, (0.05, 0.9, 0.05), (0.1, 0.8, 0.1))),
            BatchRow("bad.jpg", error="bad.jpg is damaged or truncated and cannot be read; export the tile again.")]
    page = batch_report(rows, "one.png, bad.jpg", []).html(now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC))
    assert page.startswith('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Batch report</title>')
    head = ("<thead><tr><th>file</th><th>verdict</th><th>A</th><th>B</th><th>Ensemble</th><th>agree</th><th>not H&amp;E</th>"
            "<th>unlike LC25000</th><th>subtype uncertain</th><th>flagged</th><th>error</th></tr></thead>")
    assert head in page and "thumbnail" not in page
    assert ("<tr><td>bad.jpg</td><td>unreadable</td>" + "<td>—</td>" * 3 +  # no class for a file that was not read
            "<td>False</td>" * 4 + "<td>True</td>"
            "<td>bad.jpg is damaged or truncated and cannot be read; export the tile again.</td></tr>") in page
    assert '<div class="warning">bad.jpg: bad.jpg is damaged or truncated' in page
    assert "<p>Verdicts of the files read as H&amp;E: Lung adenocarcinoma 1; refused as not H&amp;E: 0</p>" in page
    empty = batch_report([], "nothing", []).html()
    assert "<thead><tr><th>file</th></tr></thead><tbody></tbody>" in empty


def test_several_images_stand_side_by_side_in_one_row():
    page = CaseReport("t", "s", [])
    page.add_images([(np.zeros((4, 4, 3), np.uint8), "first"), (np.zeros((4, 4, 3), np.uint8), "second")], width=50)
    assert page.sections[0].startswith('<div class="images"><figure><img src="data:image/jpeg;base64,')
    assert '<figcaption>first</figcaption></figure><figure><img src="data:image/jpeg;base64,' in page.sections[0]
    assert page.sections[0].endswith("<figcaption>second</figcaption></figure></div>") and 'width="50"' in page.sections[0]
