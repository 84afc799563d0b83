"""Scoring one uploaded tile with every served model: predictions, Grad-CAM, downloadable report."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cam import GradcamExplainer
from .classes import display_name
from .images import decode_image
from .inference import LoadedModel, ModelPrediction
from .registry import load_registry


@dataclass
class ServedModel:
    """A verified model and its Grad-CAM explainer, built once per process."""

    loaded: LoadedModel
    explainer: GradcamExplainer

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

    @property
    def models_agree(self) -> bool:
        return len({r.prediction.predicted for r in self.results.values()}) <= 1

    def to_json(self) -> str:
        return json.dumps(
            {"file": self.file_name, "models": {arch: r.prediction.to_json() for arch, r in self.results.items()}}, indent=2
        )

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        classes = list(next(iter(self.results.values())).prediction.probabilities) if self.results else []
        writer.writerow(["file", "model", "weights_sha256", "predicted", "predicted_name", *[f"p_{c}" for c in classes]])
        for arch, r in self.results.items():
            p = r.prediction
            writer.writerow([self.file_name, arch, p.weights_sha256, p.predicted, display_name(p.predicted),
                             *[f"{p.probabilities[c]:.6f}" for c in classes]])
        return out.getvalue()


def served_architectures(folder: Path | None = None) -> list[str]:
    return list(load_registry(folder))


def score_tile(data: bytes, file_name: str, served: list[ServedModel]) -> TileReport:
    """Decode an upload (ImageDecodeError if it is not a usable image) and score it with every model."""
    rgb = decode_image(data, file_name)
    results = {}
    for model in served:
        prediction = model.loaded.predict([rgb])[0]
        heatmap = model.explainer.heatmap(rgb, prediction.predicted)
        results[model.loaded.entry.arch] = ModelResult(model.name, prediction, heatmap)
    return TileReport(file_name, rgb, results)
