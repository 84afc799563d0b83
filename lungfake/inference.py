"""Scoring RGB tiles with the registered models."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import is_cancer
from .errors import RegistryError
from .images import to_model_input
from .registry import ModelEntry, load_model, load_registry

LOW_CONFIDENCE = 0.6


@dataclass(frozen=True)
class ModelPrediction:
    arch: str
    probabilities: dict[str, float]  # in the model's registry class order
    weights_sha256: str

    @property
    def predicted(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted]

    @property
    def cancer_probability(self) -> float:
        return sum(p for name, p in self.probabilities.items() if is_cancer(name))

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    def to_json(self) -> dict:
        return {
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "predicted": self.predicted,
            "cancer_probability": round(self.cancer_probability, 6),
            "low_confidence": self.low_confidence,
            "weights_sha256": self.weights_sha256,
        }


class LoadedModel:
    """A registry entry and its verified Keras model."""

    def __init__(self, entry: ModelEntry, model):
        self.entry, self.model = entry, model

    @classmethod
    def load(cls, entry: ModelEntry, folder: Path | None = None) -> "LoadedModel":
        return cls(entry, load_model(entry, folder))

    def batch_input(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([to_model_input(rgb, self.entry.input_size) for rgb in images])

    def predict(self, images: list[np.ndarray]) -> list[ModelPrediction]:
        probabilities = np.asarray(self.model(self.batch_input(images), training=False))
        return [
            ModelPrediction(self.entry.arch, dict(zip(self.entry.class_names, map(float, row))), self.entry.sha256)
            for row in probabilities
        ]


def select_entries(which: str = "all", folder: Path | None = None) -> list[ModelEntry]:
    entries = load_registry(folder)
    if which == "all":
        return list(entries.values())
    if which not in entries:
        raise RegistryError(f"No model {which!r} in the registry; choose one of {', '.join(entries)} or all.")
    return [entries[which]]


def predict_batch(models: list[LoadedModel], images: list[np.ndarray]) -> list[dict[str, ModelPrediction]]:
    """For each image, each model's prediction keyed by architecture."""
    per_model = {m.entry.arch: m.predict(images) for m in models}
    return [{arch: preds[i] for arch, preds in per_model.items()} for i in range(len(images))]
