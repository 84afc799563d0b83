"""A batch, exactly: chunks and progress, each row of the table, which zip members count; with a stand-in scorer
that records what it is asked (the scoring itself is tested elsewhere)."""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from lungfake.errors import ImageDecodeError
from lungfake.evaluation.calibration_fitting import ece_interval_text
from lungfake.reports.batch import BATCH, BatchRow, _is_image_member, expand_uploads, score_batch, table_rows
from lungfake.scoring.scoring import ImageScore, ModelScore
from lungfake.serving.images import expand_folders, read_image_file
from lungfake.serving.ood import OodVerdict
from lungfake.serving.registry import EnsembleCalibration
from tests.helpers import metrics_of

CLASSES = ("lung_n", "lung_aca", "lung_scc")


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (value, value, value)).save(buffer, "PNG")
    return buffer.getvalue()


class RecordingScorer:
    """Scores every image as adenocarcinoma (two models that agree) and records each call's names."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def score(self, images, names=None, explain=False, tta=False):
        self.calls.append(list(names))
        models = {a: ModelScore(a, a.upper(), dict(zip(CLASSES, (0.05, 0.9, 0.05))), a * 64, 0.5) for a in ("a", "b")}
        verdict = OodVerdict(False, "lung H&E tissue", False, "")
        return [ImageScore(n, rgb, models, verdict, EnsembleCalibration()) for rgb, n in zip(images, names)]


def test_a_batch_is_scored_in_chunks_in_upload_order_with_progress_after_each():
    files = [(f"{i}.png", _png(i)) for i in range(BATCH + 3)]
    files[BATCH + 1] = ("broken.png", b"not an image")
    scorer, progress = RecordingScorer(), []
    rows = score_batch(scorer, files, progress.append)
    assert [len(c) for c in scorer.calls] == [BATCH, 2]
    assert scorer.calls[1] == [f"{BATCH}.png", f"{BATCH + 2}.png"]
    assert [r.name for r in rows] == [name for name, _ in files]
    assert rows[BATCH + 1].score is None and rows[BATCH + 1].error.startswith("broken.png is not an image")
    assert rows[0].score.rgb[0, 0].tolist() == [0, 0, 0] and rows[BATCH + 2].score.rgb[0, 0].tolist() == [BATCH + 2] * 3
    assert [(p.done, p.total) for p in progress] == [(BATCH, BATCH + 3), (BATCH + 3, BATCH + 3)]
    assert 0 <= progress[0].elapsed_seconds <= progress[1].elapsed_seconds < 60


def test_a_batch_without_a_readable_file_asks_the_scorer_nothing():
    scorer = RecordingScorer()
    rows = score_batch(scorer, [("a.png", b"x"), ("b.png", b"")])
    assert scorer.calls == [] and [r.error is not None for r in rows] == [True, True]


def test_each_row_of_the_table_reads_exactly():
    scorer = RecordingScorer()
    rows = score_batch(scorer, [("a.png", _png(10))]) + [BatchRow("bad.png", error="bad.png is damaged")]
    records = table_rows(rows, lambda rgb: f"thumb {rgb.shape[0]}")
    assert records[0] == {"thumbnail": "thumb 20", "file": "a.png", "verdict": "Lung adenocarcinoma",
                          "A": "Lung adenocarcinoma (90%)", "B": "Lung adenocarcinoma (90%)", "Ensemble": "Lung adenocarcinoma (90%)",
                          "agree": True, "not H&E": False, "unlike LC25000": False, "subtype uncertain": False, "flagged": False,
                          "error": ""}
    # an unreadable file: no class anywhere, its reason in the error column, and it is flagged
    assert records[1] == {"thumbnail": None, "file": "bad.png", "verdict": "unreadable", "A": "—", "B": "—", "Ensemble": "—",
                          "agree": False, "not H&E": False, "unlike LC25000": False, "subtype uncertain": False, "flagged": True,
                          "error": "bad.png is damaged"}
    assert list(records[0]) == list(records[1])
    assert table_rows(rows[:1])[0]["thumbnail"] is None  # no thumbnail function: none drawn


@pytest.mark.parametrize("name, counted", [
    ("case/a.png", True), ("A.TIFF", True), ("deep/er/b.webp", True), ("notes.txt", False), (".hidden.png", False),
    ("case/.DS_Store/x.png", False), ("__MACOSX/case/a.png", False), ("case/", False),
])
def test_which_zip_members_count_as_tiles(name, counted):
    assert _is_image_member(zipfile.ZipInfo(name)) is counted


def test_zips_and_files_keep_their_order_and_members_are_named_after_their_archive():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x/1.png", _png(1))
        archive.writestr("x/2.png", _png(2))
    expanded = expand_uploads([("first.png", _png(0)), ("more.ZIP", buffer.getvalue()), ("last.png", _png(3))])
    assert [name for name, _ in expanded] == ["first.png", "more.ZIP/x/1.png", "more.ZIP/x/2.png", "last.png"]
    assert expanded[1][1] == _png(1)


def test_the_calibration_error_is_explained_with_its_interval():
    with_interval = metrics_of(expected_calibration_error=0.0391, expected_calibration_error_ci95=[0.022, 0.069])
    assert ece_interval_text(with_interval) == (
        "Expected calibration error on the test tiles: 0.039 (target at most 0.03): the mean gap between confidence "
        "and accuracy, over bins of confidence. 95% interval over test families 0.022-0.069: a few families decide "
        "it, so an ECE inside the interval of another is no evidence that either is better calibrated.")
    assert ece_interval_text(metrics_of(expected_calibration_error=0.01)).endswith("over bins of confidence.")


def test_several_folders_each_stand_for_their_images_and_a_file_keeps_its_path_in_messages(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "t.png").write_bytes(_png(5))
    found = expand_folders([str(tmp_path / "one"), str(tmp_path / "two")])
    assert found == [str(tmp_path / "one" / "t.png"), str(tmp_path / "two" / "t.png")]
    (tmp_path / "none").mkdir()
    with pytest.raises(ImageDecodeError) as refused:
        expand_folders([str(tmp_path / "none")])
    assert str(refused.value) == (f"{tmp_path / 'none'} is a folder with no image files (.bmp, .gif, .jpeg, .jpg, .png, "
                                  ".tif, .tiff, .webp) in it; pass the tiles' files or the folder that holds them.")
    (tmp_path / "cut.png").write_bytes(_png(5)[:30])
    with pytest.raises(ImageDecodeError, match=f"^{tmp_path / 'cut.png'} is not an image"):
        read_image_file(tmp_path / "cut.png")
    pixels = read_image_file(tmp_path / "one" / "t.png")
    assert pixels.shape == (20, 20, 3) and np.all(pixels == 5)
