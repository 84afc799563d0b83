"""The registered models, loaded and verified, and the out-of-distribution screen (scoring.py uses both)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import RegistryError
from .images import to_model_input
from .ood import NOT_CHECKED, OodReference, OodVerdict
from .registry import ModelEntry, load_model, load_ood_entry, load_registry, verified_file

POOLED_FEATURES_LAYER = "pool"



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

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pooled features, uncalibrated probabilities) of model inputs already at the input size."""
        features, probabilities = self._forward(np.asarray(pixels, np.float32))
        return np.asarray(features), np.asarray(probabilities)

    def features_of(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled features of RGB images of any size (resized here)."""
        return self.forward(np.stack([to_model_input(rgb, self.entry.input_size) for rgb in images]))[0]


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

    def assess(self, images: list[np.ndarray], features: dict[str, np.ndarray], inputs: dict[int, np.ndarray] | None = None) -> list[OodVerdict]:
        """A verdict per image; features are the pooled features already computed, keyed by architecture,
        and inputs the images already resized, keyed by size (either spares the feature model's work)."""
        if self.reference is None:
            return [NOT_CHECKED] * len(images)
        arch, size = self.feature_model.entry.arch, self.feature_model.entry.input_size
        if arch in features:
            pooled = features[arch]
        elif inputs and size in inputs:
            pooled = self.feature_model.forward(inputs[size])[0]
        else:
            pooled = self.feature_model.features_of(images)
        return [self.reference.assess(rgb, row) for rgb, row in zip(images, pooled)]


def select_entries(which: str = "all", folder: Path | None = None) -> list[ModelEntry]:
    entries = load_registry(folder)
    if which == "all":
        return list(entries.values())
    if which not in entries:
        raise RegistryError(f"No model {which!r} in the registry; choose one of {', '.join(entries)} or all.")
    return [entries[which]]
