"""Grad-CAM heatmaps (tf-keras-vis) and their overlay on the tile."""
from __future__ import annotations

import cv2
import numpy as np

from .images import to_model_input
from .registry import ModelEntry


class GradcamExplainer:
    """One tf-keras-vis Gradcam per model, built once on a clone so the served model is never modified."""

    def __init__(self, model, entry: ModelEntry):
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        self.entry = entry
        self._gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)

    def heatmap(self, rgb: np.ndarray, class_name: str) -> np.ndarray:
        """Relevance in [0, 1] at the model's input size for the given class."""
        from tf_keras_vis.utils.scores import CategoricalScore

        pixels = to_model_input(rgb, self.entry.input_size)[None]
        score = CategoricalScore([self.entry.class_names.index(class_name)])
        cam = np.asarray(self._gradcam(score, pixels, penultimate_layer=self.entry.gradcam_layer, normalize_cam=False))[0]
        cam = np.nan_to_num(np.maximum(cam, 0.0))
        peak = cam.max()
        return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The tile with the heatmap (jet colours) blended over it at the given opacity, at the tile's size."""
    height, width = rgb.shape[:2]
    resized = cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.uint8(np.clip(resized, 0, 1) * 255), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    blended = (1.0 - opacity) * rgb.astype(np.float32) + opacity * coloured.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
