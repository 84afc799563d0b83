"""The registered models, loaded and verified, and the out-of-distribution screen (scoring.py uses both)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from lungfake.errors import ModelIntegrityError, RegistryError
from lungfake.serving.images import to_model_input
from lungfake.serving.model_file import ACTIVATIONS, CLASS_MAPS, OUTPUTS, POOLED, PROBABILITIES
from lungfake.serving.ood import NOT_CHECKED, OodReference, OodVerdict
from lungfake.serving.registry import ModelEntry, Registry, verified_file, verified_path


class LoadedModel:
    """A registry entry and its verified served file (model_file.py), open in a LiteRT interpreter.

    One call of the file gives the probabilities, the pooled features and the class maps that Grad-CAM is made
    from, so a prediction with its overlay is one pass of the network. An interpreter runs one call at a time."""

    def __init__(self, entry: ModelEntry, interpreter):
        self.entry = entry
        self._interpreter = interpreter
        self._runner = interpreter.get_signature_runner()
        self._lock = threading.Lock()
        self._check_signature()

    @classmethod
    def load(cls, entry: ModelEntry, folder: Path | None = None) -> LoadedModel:
        """The entry's file from the weights folder, after checking its sha256 against the registry's."""
        return cls.from_file(entry, verified_path(entry, folder))

    @classmethod
    def from_file(cls, entry: ModelEntry, path: Path) -> LoadedModel:
        """A served file read as the entry describes it, without the registry's sha256 check (load does that)."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        except ValueError as exc:  # not a LiteRT flatbuffer, though its sha256 is the registry's
            raise ModelIntegrityError(f"Model {entry.arch} ({entry.file}) is not a served model file ({exc}); "
                                      "export it again with python -m lungfake train.") from None
        return cls(entry, interpreter)

    def with_entry(self, entry: ModelEntry) -> LoadedModel:
        """The same open file read as another entry describes it (another explanation method, say); it shares the
        interpreter's lock, since the interpreter still runs one call at a time."""
        clone = LoadedModel(entry, self._interpreter)
        clone._lock = self._lock
        return clone

    def _check_signature(self) -> None:
        entry, inputs, outputs = self.entry, self._runner.get_input_details(), self._runner.get_output_details()
        expected, n_classes = (entry.input_size, entry.input_size, 3), len(entry.class_names)
        shape = tuple(int(n) for n in next(iter(inputs.values()))["shape"][1:]) if len(inputs) == 1 else None
        classes = {name: int(outputs[name]["shape"][-1]) for name in (PROBABILITIES, CLASS_MAPS) if name in outputs}
        if shape != expected or classes != {PROBABILITIES: n_classes, CLASS_MAPS: n_classes} or POOLED not in outputs:
            raise ModelIntegrityError(
                f"Model {entry.arch} takes {shape} pixels and gives {classes or 'no'} classes (outputs: {', '.join(outputs)}), "
                f"but the registry says {expected} pixels in and {n_classes} classes out of {', '.join(OUTPUTS)}; "
                "export it again (python -m lungfake export).")
        if bool(entry.scorecam_layer) != (ACTIVATIONS in outputs):
            raise ModelIntegrityError(
                f"Model {entry.arch}'s file {'lacks' if entry.scorecam_layer else 'has'} the {ACTIVATIONS} output that the "
                f"registry's scorecam_layer ({entry.scorecam_layer or 'none'}) says; export it again (python -m lungfake export).")
        self._input_name = next(iter(inputs))
        self._outputs = (*OUTPUTS, ACTIVATIONS) if entry.scorecam_layer else OUTPUTS
        # cells per side of the feature map the class maps come from (the input size over the network's stride), and
        # of the Score-CAM layer's activations (None in a file without them)
        self.feature_cells = int(outputs[CLASS_MAPS]["shape"][1])
        self.activation_cells = int(outputs[ACTIVATIONS]["shape"][1]) if entry.scorecam_layer else None

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """probabilities (uncalibrated), pooled features and class maps of model inputs already at the input size (and
        the Score-CAM layer's activations, where the file has them)."""
        with self._lock:
            outputs = self._runner(**{self._input_name: np.ascontiguousarray(pixels, np.float32)})
            return {name: np.array(outputs[name]) for name in self._outputs}

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pooled features, uncalibrated probabilities) of model inputs already at the input size."""
        outputs = self.run(pixels)
        return outputs[POOLED], outputs[PROBABILITIES]

    def features_of(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled features of RGB images of any size (resized here)."""
        return self.forward(np.stack([to_model_input(rgb, self.entry.input_size) for rgb in images]))[0]


class OodScreen:
    """The registered out-of-distribution reference and the model whose features it reads."""

    def __init__(self, reference: OodReference | None, feature_model: LoadedModel | None):
        self.reference, self.feature_model = reference, feature_model

    @classmethod
    def load(cls, scoring: list[LoadedModel], registry: Registry) -> OodScreen:
        """Reuses the feature model when it is among the scoring models, else loads it."""
        entry = registry.ood
        if entry is None:
            return cls(None, None)
        reference = OodReference.from_file(verified_file(entry.file, entry.sha256, "the out-of-distribution reference",
                                                         registry.folder))
        by_arch = {m.entry.arch: m for m in scoring}
        if entry.feature_model in by_arch:
            return cls(reference, by_arch[entry.feature_model])
        feature_entry = registry.models.get(entry.feature_model)
        if feature_entry is None:
            raise RegistryError(f"The out-of-distribution check reads {entry.feature_model}, which is not in the registry.")
        return cls(reference, LoadedModel.load(feature_entry, registry.folder))

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
    return Registry.load(folder).select(which)
