"""Scoring RGB tiles with the registered models."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import is_cancer
from .errors import RegistryError
from .images import to_model_input
from .ood import NOT_CHECKED, OodReference, OodVerdict
from .registry import ModelEntry, load_model, load_ood_entry, load_registry, verified_file

POOLED_FEATURES_LAYER = "pool"

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
        import keras
        import tensorflow as tf

        self.entry, self.model = entry, model
        # A second view of the same layers (nothing is copied or changed): one forward pass
        # gives the probabilities and the pooled features the out-of-distribution check needs.
        with_features = keras.Model(model.input, [model.get_layer(POOLED_FEATURES_LAYER).output, model.output])
        # Traced once: eager, op-by-op execution takes several times as long for a single tile.
        self._forward = tf.function(lambda pixels: with_features(pixels, training=False), reduce_retracing=True)

    @classmethod
    def load(cls, entry: ModelEntry, folder: Path | None = None) -> "LoadedModel":
        return cls(entry, load_model(entry, folder))

    def batch_input(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([to_model_input(rgb, self.entry.input_size) for rgb in images])

    def predict_with_features(self, images: list[np.ndarray]) -> tuple[list[ModelPrediction], np.ndarray]:
        features, probabilities = self._forward(self.batch_input(images))
        predictions = [
            ModelPrediction(self.entry.arch, dict(zip(self.entry.class_names, map(float, row))), self.entry.sha256)
            for row in np.asarray(probabilities)
        ]
        return predictions, np.asarray(features)

    def predict(self, images: list[np.ndarray]) -> list[ModelPrediction]:
        return self.predict_with_features(images)[0]


class OodScreen:
    """The registered out-of-distribution reference and the model whose features it reads."""

    def __init__(self, reference: OodReference | None, feature_model: LoadedModel | None):
        self.reference, self.feature_model = reference, feature_model

    @classmethod
    def load(cls, scoring: list[LoadedModel], folder: Path | None = None) -> "OodScreen":
        """Reuses the feature model when it is among the scoring models, else loads it."""
        entry = load_ood_entry(folder)
        if entry is None:
            return cls(None, None)
        reference = OodReference.from_file(verified_file(entry.file, entry.sha256, "the out-of-distribution reference", folder))
        by_arch = {m.entry.arch: m for m in scoring}
        if entry.feature_model in by_arch:
            return cls(reference, by_arch[entry.feature_model])
        feature_entry = load_registry(folder).get(entry.feature_model)
        if feature_entry is None:
            raise RegistryError(f"The out-of-distribution check reads {entry.feature_model}, which is not in the registry.")
        return cls(reference, LoadedModel.load(feature_entry, folder))

    def assess(self, images: list[np.ndarray], features: dict[str, np.ndarray]) -> list[OodVerdict]:
        """A verdict per image; features are the pooled features already computed, keyed by architecture."""
        if self.reference is None:
            return [NOT_CHECKED] * len(images)
        arch = self.feature_model.entry.arch
        pooled = features[arch] if arch in features else self.feature_model.predict_with_features(images)[1]
        return [self.reference.assess(rgb, row) for rgb, row in zip(images, pooled)]


def select_entries(which: str = "all", folder: Path | None = None) -> list[ModelEntry]:
    entries = load_registry(folder)
    if which == "all":
        return list(entries.values())
    if which not in entries:
        raise RegistryError(f"No model {which!r} in the registry; choose one of {', '.join(entries)} or all.")
    return [entries[which]]


@dataclass(frozen=True)
class ScoredImage:
    predictions: dict[str, ModelPrediction]  # keyed by architecture
    ood: OodVerdict

    def to_json(self) -> dict:
        return {**self.ood.to_json(), "models": {arch: p.to_json() for arch, p in self.predictions.items()}}


def score_batch(models: list[LoadedModel], screen: OodScreen, images: list[np.ndarray]) -> list[ScoredImage]:
    """Every model's prediction for each image, and whether the image looks like a training tile."""
    predictions, features = {}, {}
    for m in models:
        predictions[m.entry.arch], features[m.entry.arch] = m.predict_with_features(images)
    verdicts = screen.assess(images, features)
    return [ScoredImage({arch: preds[i] for arch, preds in predictions.items()}, verdicts[i]) for i in range(len(images))]
