"""The registered models, loaded and verified, and the out-of-distribution screen (scoring.py uses both)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ModelIntegrityError, RegistryError
from .images import to_model_input
from .ood import NOT_CHECKED, OodReference, OodVerdict
from .registry import ModelEntry, load_model, load_ood_entry, load_registry, verified_file

POOLED_FEATURES_LAYER, OUTPUT_LAYER = "pool", "probabilities"  # the head every lungfake model ends with (models.py)
HEAD_DROPOUT = "head_dropout"  # between them in training; the identity at inference


def _check_head(model, entry: ModelEntry) -> None:
    """The model must end feature map (the Grad-CAM layer) -> pool -> [dropout] -> probabilities, so that the
    one traced backbone serves both the prediction and the Grad-CAM."""
    pool, output = model.get_layer(POOLED_FEATURES_LAYER), model.get_layer(OUTPUT_LAYER)
    before_output = output.input
    if HEAD_DROPOUT in {layer.name for layer in model.layers}:
        dropout = model.get_layer(HEAD_DROPOUT)
        before_output = pool.output if dropout.input is pool.output and output.input is dropout.output else None
    if pool.input is not model.get_layer(entry.gradcam_layer).output or before_output is not pool.output:
        raise ModelIntegrityError(f"Model {entry.arch} does not end {entry.gradcam_layer} -> {POOLED_FEATURES_LAYER} -> "
                                  f"{OUTPUT_LAYER}; retrain it with python -m lungfake train.")


class LoadedModel:
    """A registry entry, its verified Keras model, and the model's backbone traced once.

    The backbone (pixels to the Grad-CAM layer's feature map) is one TensorFlow function with one trace for
    any batch size; the prediction and the Grad-CAM both run it, so TensorFlow optimises and keeps one graph
    per model rather than one for each. The head (pooling, dense, softmax) is small and runs as it is."""

    def __init__(self, entry: ModelEntry, model):
        import keras
        import tensorflow as tf

        _check_head(model, entry)
        self.entry, self.model = entry, model
        backbone = keras.Model(model.input, model.get_layer(entry.gradcam_layer).output)
        size = entry.input_size
        # Traced once: eager, op-by-op execution takes several times as long for a single tile.
        self.feature_map = tf.function(lambda pixels: backbone(pixels, training=False),
                                       input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
        self.feature_map_shape = backbone.output.shape
        self._pool, self._output = model.get_layer(POOLED_FEATURES_LAYER), model.get_layer(OUTPUT_LAYER)

    @classmethod
    def load(cls, entry: ModelEntry, folder: Path | None = None) -> LoadedModel:
        return cls(entry, load_model(entry, folder))

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pooled features, uncalibrated probabilities) of model inputs already at the input size."""
        pooled = self._pool(self.feature_map(np.asarray(pixels, np.float32)))
        return np.asarray(pooled), np.asarray(self._output(pooled))

    def features_of(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled features of RGB images of any size (resized here)."""
        return self.forward(np.stack([to_model_input(rgb, self.entry.input_size) for rgb in images]))[0]


class OodScreen:
    """The registered out-of-distribution reference and the model whose features it reads."""

    def __init__(self, reference: OodReference | None, feature_model: LoadedModel | None):
        self.reference, self.feature_model = reference, feature_model

    @classmethod
    def load(cls, scoring: list[LoadedModel], folder: Path | None = None) -> OodScreen:
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

    def assess(self, images: list[np.ndarray], features: dict[str, np.ndarray],
               inputs: dict[int, np.ndarray] | None = None) -> list[OodVerdict]:
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
    """The registry entries named by which: all, one architecture, or several separated by commas."""
    entries = load_registry(folder)
    if which == "all":
        return list(entries.values())
    names = [name.strip() for name in which.split(",") if name.strip()]
    unknown = [name for name in names if name not in entries]
    if unknown or not names:
        raise RegistryError(f"No model {', '.join(map(repr, unknown)) or repr(which)} in the registry; choose from "
                            f"{', '.join(entries)}, several separated by commas, or all.")
    return [entries[name] for name in dict.fromkeys(names)]
