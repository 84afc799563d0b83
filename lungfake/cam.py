"""Grad-CAM heatmaps and their overlay on the tile.

Every served model ends feature map A -> global average pooling -> dense (weights W) -> softmax (model_file.py). Grad-CAM
(Selvaraju et al. 2017) weighs each channel k of A by the mean over the map of d(score of class c)/dA_k, the class
score being the dense layer's output before the softmax: for this head that gradient is W[k, c] / (cells in the map)
at every cell, so Grad-CAM is ReLU(sum_k W[k, c] A_k) / cells: the served file's class map for c, scaled. The
heatmap is then brought to the input size and scaled to a peak of 1 exactly as tf-keras-vis's Gradcam does
(tests/test_cli_and_cam.py compares the two on a Keras model); no gradient, and no TensorFlow, is needed.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import zoom

from .images import to_model_input
from .inference import LoadedModel
from .model_file import CLASS_MAPS


def gradcam(class_map: np.ndarray, input_size: int) -> np.ndarray:
    """Relevance in [0, 1] at input_size x input_size from one class map (cells x cells) of a served model."""
    cam = np.maximum(np.asarray(class_map, np.float32), 0.0)
    cam = zoom(cam, (input_size / cam.shape[0], input_size / cam.shape[1]), order=1)  # as tf-keras-vis expands it
    cam = np.nan_to_num(np.maximum(cam, 0.0))
    peak = cam.max()
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


class GradcamExplainer:
    """Grad-CAM of one served model for any image (Scorer makes it from the scoring pass itself)."""

    def __init__(self, loaded: LoadedModel):
        self.loaded, self.entry = loaded, loaded.entry

    def heatmap(self, rgb: np.ndarray, class_name: str) -> np.ndarray:
        """Relevance in [0, 1] at the model's input size for the given class, of an RGB image of any size."""
        return self.heatmap_of_input(to_model_input(rgb, self.entry.input_size), self.entry.class_names.index(class_name))

    def heatmap_of_input(self, model_input: np.ndarray, class_index: int) -> np.ndarray:
        """The same for an image already at the model's input size."""
        class_maps = self.loaded.run(np.asarray(model_input, np.float32)[None])[CLASS_MAPS][0]
        return gradcam(class_maps[..., class_index], self.entry.input_size)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The tile with the heatmap (jet colours) blended over it at the given opacity, at the tile's size."""
    height, width = rgb.shape[:2]
    resized = cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.uint8(np.clip(resized, 0, 1) * 255), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    blended = (1.0 - opacity) * rgb.astype(np.float32) + opacity * coloured.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
