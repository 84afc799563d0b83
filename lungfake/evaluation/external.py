"""Other labs' tissue: a folder of labelled images with a manifest, scored through the one scoring path and summarised
per model and for the ensemble's verdict. For measuring only: nothing is trained, chosen or tuned on these images.

The folder holds ``manifest.csv`` with at least the columns ``path`` (relative to the folder) and ``label`` (a class
name), as ``../shared/data/external_dev`` does; a ``source_repo`` column, where present, says where each came from.
"""
from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungfake.classes import CLASS_NAMES, is_cancer
from lungfake.errors import DatasetError, ImageDecodeError, UploadLimitError
from lungfake.evaluation.subtype_rule import subtype_figures

log = logging.getLogger(__name__)
MANIFEST = "manifest.csv"
DEFAULT_EXTERNAL_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "external_dev"


@dataclass(frozen=True)
class ExternalImage:
    path: Path
    label: str
    source: str


def read_manifest(folder: Path) -> list[ExternalImage]:
    """The labelled images of an external folder; DatasetError when the manifest is missing or names an unknown class."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        raise DatasetError(f"No {MANIFEST} in {folder}: an external folder lists its images as path,label rows.")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DatasetError(f"{manifest} needs the columns path and label.")
    unknown = sorted({r["label"] for r in rows} - set(CLASS_NAMES))
    if unknown:
        raise DatasetError(f"{manifest} has labels {unknown}; the classes are {', '.join(CLASS_NAMES)}.")
    return [ExternalImage(Path(folder) / r["path"], r["label"], r.get("source_repo") or "unknown") for r in rows]


def wilson_interval(right: int, total: int) -> list[float] | None:
    """The Wilson 95% interval of a proportion (it stays inside 0-1 and is honest for a handful of images)."""
    from scipy.stats import binomtest

    if total == 0:
        return None
    interval = binomtest(right, total).proportion_ci(0.95, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]


def proportion(right: int, total: int) -> dict:
    return {"value": right / total if total else None, "right": right, "n": total, "ci95": wilson_interval(right, total)}


def _member_summary(predicted: list[str | None], labels: list[str]) -> dict:
    """Accuracy, cancer-vs-benign accuracy and confusion matrix; None (a refused image: no class) counts as wrong."""
    right = sum(p == t for p, t in zip(predicted, labels))
    cancer_right = sum(p is not None and is_cancer(p) == is_cancer(t) for p, t in zip(predicted, labels))
    matrix = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), int)
    for p, t in zip(predicted, labels):
        if p is not None:
            matrix[CLASS_NAMES.index(t), CLASS_NAMES.index(p)] += 1
    return {"accuracy": proportion(int(right), len(labels)), "cancer_vs_benign": proportion(int(cancer_right), len(labels)),
            "confusion_matrix": matrix.tolist(), "refused": sum(p is None for p in predicted)}


def external_summary(scores: list, labels: list[str], sources: list[str], unreadable: int = 0) -> dict:
    """Figures for each model and the ensemble on scored external images (ImageScores; a refused image counts as
    wrong), with the screen's rates and the verdict's subtype figures."""
    summary = {"images": len(scores), "unreadable": unreadable, "labels": dict(Counter(labels)), "sources": dict(Counter(sources)),
               "ood_rate": proportion(sum(s.refused for s in scores), len(scores)),
               "domain_shift_rate": proportion(sum(bool(s.ood.domain_shift) for s in scores), len(scores)), "models": {}}
    if not scores:
        return summary
    for arch in scores[0].models:
        summary["models"][arch] = _member_summary([None if s.refused else s.models[arch].predicted for s in scores], labels)
    if scores[0].ensemble is not None:
        summary["models"]["ensemble"] = _member_summary([None if s.refused else s.ensemble.predicted for s in scores], labels)
    summary["verdict"] = subtype_figures([s.verdict for s in scores], [CLASS_NAMES.index(label) for label in labels])
    return summary


def evaluate_external(folder: Path, scorer) -> dict:
    """Score every image of an external folder (a Scorer, or the app's models' process) and summarise it."""
    from lungfake.serving.images import read_image_file

    images, labels, sources, unreadable = [], [], [], 0
    for item in read_manifest(folder):
        try:
            images.append(read_image_file(item.path))
        except (ImageDecodeError, UploadLimitError) as exc:
            log.warning("skipping %s: %s", item.path, exc)
            unreadable += 1
            continue
        labels.append(item.label)
        sources.append(item.source)
    scores = scorer.score(images, [str(i) for i in range(len(images))]) if images else []
    log.info("scored %d external images from %s (%d unreadable)", len(images), folder, unreadable)
    return external_summary(scores, labels, sources, unreadable)
