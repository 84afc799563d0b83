"""Other labs' images: the manifest, the Wilson intervals, the per-model and verdict figures, and how they are told."""
import numpy as np
import pytest
from PIL import Image

from lungfake.errors import DatasetError
from lungfake.evaluation.external import evaluate_external, external_summary, read_manifest, wilson_interval
from lungfake.scoring.scoring import ImageScore, ModelScore
from lungfake.serving.ood import OodVerdict
from lungfake.serving.registry import EnsembleCalibration
from lungfake.serving.verdict import SubtypeRule
from tests.helpers import he_like

CLASSES = ("lung_n", "lung_aca", "lung_scc")
LIKE = OodVerdict(False, "lung H&E tissue", False, "")


def _score(first, second, screen=LIKE) -> ImageScore:
    models = {arch: ModelScore(arch, arch.upper(), dict(zip(CLASSES, p)), arch * 32, 0.5) for arch, p in (("a", first), ("b", second))}
    return ImageScore("x", np.zeros((4, 4, 3), np.uint8), models, screen, EnsembleCalibration(subtype_rule=SubtypeRule(0.5)))


def test_the_manifest_lists_labelled_images_and_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "manifest.csv").write_text("path,label,source_repo\na/1.png,lung_aca,lab-x\na/2.png,lung_n,\n")
    images = read_manifest(tmp_path)
    assert [(i.path.name, i.label, i.source) for i in images] == [("1.png", "lung_aca", "lab-x"), ("2.png", "lung_n", "unknown")]
    (tmp_path / "manifest.csv").write_text("path,label\na/1.png,small_cell\n")
    with pytest.raises(DatasetError, match="labels \\['small_cell'\\]"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("file,class\na/1.png,lung_n\n")
    with pytest.raises(DatasetError, match="needs the columns path and label"):
        read_manifest(tmp_path)
    with pytest.raises(DatasetError, match="No manifest.csv"):
        read_manifest(tmp_path / "a")


def test_wilson_intervals_are_the_textbook_values():
    assert wilson_interval(16, 17) == pytest.approx([0.7302, 0.9895], abs=1e-4)
    assert wilson_interval(0, 17) == pytest.approx([0.0, 0.1843], abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_the_summary_counts_each_model_the_ensemble_the_screen_and_the_verdicts():
    refused = OodVerdict(True, "not H&E", None, "")
    shifted = OodVerdict(False, "lung H&E tissue", True, "stain")
    scores = [_score((0.05, 0.9, 0.05), (0.05, 0.85, 0.1)),  # adenocarcinoma, both right, subtype given
              _score((0.05, 0.3, 0.65), (0.05, 0.8, 0.15)),  # the models disagree: subtype uncertain
              _score((0.9, 0.05, 0.05), (0.2, 0.1, 0.7)),  # a says benign (right), b squamous
              _score((0.9, 0.05, 0.05), (0.9, 0.05, 0.05), refused),  # refused: wrong for every model, no verdict
              _score((0.05, 0.9, 0.05), (0.05, 0.9, 0.05), shifted)]  # shifted, margin 0.89 < default 1.0: uncertain
    labels = ["lung_aca", "lung_aca", "lung_n", "lung_n", "lung_scc"]
    summary = external_summary(scores, labels, ["x"] * 5)
    a, b, ensemble = (summary["models"][k] for k in ("a", "b", "ensemble"))
    assert (a["accuracy"]["right"], b["accuracy"]["right"], ensemble["accuracy"]["right"]) == (2, 2, 3)
    assert (a["cancer_vs_benign"]["right"], b["cancer_vs_benign"]["right"]) == (4, 3)
    assert a["refused"] == 1 and a["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 1, 0]]
    assert summary["ood_rate"]["right"] == 1 and summary["domain_shift_rate"]["right"] == 1
    assert summary["verdict"] == {"images": 5, "subtype_uncertain": 2, "subtype_uncertain_share": 0.4, "called": 2,
                                  "called_right": 2, "called_accuracy": 1.0}
    assert summary["labels"] == {"lung_aca": 2, "lung_n": 2, "lung_scc": 1} and summary["sources"] == {"x": 5}


def test_an_external_folder_is_scored_through_the_scorer(tiny_weights, tmp_path):
    from lungfake.scoring.scoring import Scorer

    for i in range(2):
        Image.fromarray(he_like(i)).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "manifest.csv").write_text("path,label\n0.png,lung_n\n1.png,lung_aca\nbroken.png,lung_scc\n")
    summary = evaluate_external(tmp_path, Scorer.load("all", tiny_weights))
    assert summary["images"] == 2 and summary["unreadable"] == 1 and summary["labels"] == {"lung_n": 1, "lung_aca": 1}
    assert summary["models"]["tiny"]["accuracy"]["n"] == 2 and "ensemble" not in summary["models"]


def test_the_figures_are_told_with_their_n_and_intervals_and_drawn_with_them():
    from lungfake.evaluation.comparison import external_sentences
    from lungfake.reports.charts import external_chart
    from tests.helpers import metrics_of

    scores = [_score((0.05, 0.9, 0.05), (0.05, 0.85, 0.1)), _score((0.9, 0.05, 0.05), (0.2, 0.1, 0.7))]
    external = {"folder": "lab", **external_summary(scores, ["lung_aca", "lung_n"], ["lab-x", "lab-x"])}
    metrics = {("a", "grouped"): metrics_of(arch="a", display_name="Model A"),
               ("b", "grouped"): metrics_of(arch="b", display_name="Model B"),
               ("ensemble", "grouped"): metrics_of(arch="ensemble", kind="ensemble", external=external)}
    sentences = external_sentences(metrics)
    assert sentences[0].startswith("Measured on only 2 labelled images from 1 outside source (1 lung_aca, 1 lung_n; folder `lab`)")
    assert sentences[1] == "Cancer vs benign: Model A 2 of 2 (34%-100%); Model B 1 of 2 (9%-91%); the ensemble 2 of 2 (34%-100%)."
    assert sentences[2].startswith("Three classes: Model A 2 of 2") and "The screen called 0 of 2" in sentences[3]
    assert sentences[4] == ("The subtype was marked uncertain on 0 of 2; the verdicts given (benign or a subtype) were right on "
                            "2 of 2 (100%).")
    assert external_sentences({k: v for k, v in metrics.items() if k[0] != "ensemble"}) == []
    figure = external_chart(external, {"a": "Model A", "b": "Model B", "ensemble": "Ensemble"})
    assert [trace.name for trace in figure.data] == ["Cancer vs benign", "Three classes"]
    assert list(figure.data[0].y) == [1.0, 0.5, 1.0]
    assert list(figure.data[0].error_y.arrayminus) == pytest.approx([1 - 0.3424, 0.5 - 0.0945, 1 - 0.3424], abs=1e-3)
