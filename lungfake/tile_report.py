"""Scoring one uploaded tile with every served model: predictions, Grad-CAM, downloadable report."""
from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cam import GradcamExplainer
from .classes import display_name
from .images import decode_image
from .inference import LoadedModel, ModelPrediction, OodScreen
from .ood import OodVerdict
from .registry import load_registry


@dataclass
class ServedModel:
    """A verified model and its Grad-CAM explainer, built once per process."""

    loaded: LoadedModel
    explainer: GradcamExplainer
    # One scoring at a time per model: the app serves many sessions from threads, and on two cores
    # queuing them costs no throughput while keeping memory flat and every result identical.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(cls, arch: str, folder: Path | None = None) -> "ServedModel":
        loaded = LoadedModel.load(load_registry(folder)[arch], folder)
        return cls(loaded, GradcamExplainer(loaded.model, loaded.entry))

    @property
    def name(self) -> str:
        return self.loaded.entry.display_name or self.loaded.entry.arch


@dataclass(frozen=True)
class ModelResult:
    model_name: str
    prediction: ModelPrediction
    heatmap: np.ndarray  # [0, 1] at the model's input size, for the predicted class


@dataclass(frozen=True)
class TileReport:
    file_name: str
    rgb: np.ndarray
    results: dict[str, ModelResult]
    ood: OodVerdict

    @property
    def models_agree(self) -> bool:
        return len({r.prediction.predicted for r in self.results.values()}) <= 1

    def to_json(self) -> str:
        return json.dumps(
            {"file": self.file_name, **self.ood.to_json(),
             "models": {arch: r.prediction.to_json() for arch, r in self.results.items()}}, indent=2
        )

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        classes = list(next(iter(self.results.values())).prediction.probabilities) if self.results else []
        writer.writerow(["file", "model", "weights_sha256", "predicted", "predicted_name", *[f"p_{c}" for c in classes],
                         "ood", "ood_reason"])
        for arch, r in self.results.items():
            p = r.prediction
            writer.writerow([self.file_name, arch, p.weights_sha256, p.predicted, display_name(p.predicted),
                             *[f"{p.probabilities[c]:.6f}" for c in classes], self.ood.ood, self.ood.reason])
        return out.getvalue()


def served_architectures(folder: Path | None = None) -> list[str]:
    return list(load_registry(folder))


def score_tile(data: bytes, file_name: str, served: list[ServedModel], screen: OodScreen) -> TileReport:
    """Decode an upload (ImageDecodeError if it is not a usable image), score it with every model, check it is a tile."""
    rgb = decode_image(data, file_name)
    results, features = {}, {}
    for model in served:
        arch = model.loaded.entry.arch
        with model.lock:
            predictions, features[arch] = model.loaded.predict_with_features([rgb])
            heatmap = model.explainer.heatmap(rgb, predictions[0].predicted)
        results[arch] = ModelResult(model.name, predictions[0], heatmap)
    return TileReport(file_name, rgb, results, screen.assess([rgb], features)[0])
