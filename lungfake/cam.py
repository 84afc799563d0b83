"""Grad-CAM heatmaps (tf-keras-vis) and their overlay on the tile."""
from __future__ import annotations

import cv2
import numpy as np

from .images import to_model_input
from .inference import OUTPUT_LAYER, POOLED_FEATURES_LAYER, LoadedModel


def _traced_backbone_class():
    import keras
    import tensorflow as tf

    class TracedBackbone(keras.layers.Layer):
        """A model's backbone up to its Grad-CAM layer, as the model's own traced function (LoadedModel's).

        Grad-CAM only needs the gradient of the class score with respect to this layer's output, which
        flows through the small head alone; running the backbone traced instead of op by op in eager
        mode makes a heatmap about as fast as a prediction, and reusing the prediction's trace means
        TensorFlow optimises and keeps one graph per model.
        """

        def __init__(self, feature_map, output_shape, **kwargs):
            super().__init__(**kwargs)
            self._feature_map, self._output_shape = feature_map, tuple(output_shape)

        def call(self, pixels):
            # tf-keras-vis watches the input pixels, so the tape would record the backbone and, though
            # asked only for the gradient at this layer's output, backpropagate through all of it (0.26 s
            # a ResNet50 heatmap). The backbone runs off the tape; adding exactly zero derived from the
            # pixels keeps this output on it, which is all Grad-CAM needs.
            feature_map = self._feature_map(tf.stop_gradient(pixels))
            return feature_map + 0.0 * tf.reduce_mean(pixels)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *self._output_shape[1:])

    return TracedBackbone


def gradcam_view(loaded: LoadedModel):
    """The same network as pixels -> traced backbone (named as the Grad-CAM layer) -> pooling -> linear head.

    Built from the model's own traced backbone and weights; nothing of the model is changed or copied. The
    head gives class scores before the softmax, which is what Grad-CAM differentiates (tf-keras-vis would
    otherwise clone the whole model to swap the activation)."""
    import keras

    entry, model = loaded.entry, loaded.model
    pixels = keras.Input((entry.input_size, entry.input_size, 3), name="pixels")
    traced = _traced_backbone_class()(loaded.feature_map, loaded.feature_map_shape, name=entry.gradcam_layer)
    pooled = keras.layers.GlobalAveragePooling2D(name=POOLED_FEATURES_LAYER)(traced(pixels))
    served_head = model.get_layer(OUTPUT_LAYER)
    head = keras.layers.Dense(served_head.units, activation=None, name=OUTPUT_LAYER)
    outputs = head(pooled)
    head.set_weights(served_head.get_weights())
    return keras.Model(pixels, outputs, name=f"{model.name}_gradcam")


class GradcamExplainer:
    """One tf-keras-vis Gradcam per model, on a linear-headed view of it: nothing is cloned or modified."""

    def __init__(self, loaded: LoadedModel):
        from tf_keras_vis.gradcam import Gradcam

        self.entry = loaded.entry
        self._gradcam = Gradcam(gradcam_view(loaded), model_modifier=None, clone=False)

    def heatmap(self, rgb: np.ndarray, class_name: str) -> np.ndarray:
        """Relevance in [0, 1] at the model's input size for the given class, of an RGB image of any size."""
        return self.heatmap_of_input(to_model_input(rgb, self.entry.input_size), self.entry.class_names.index(class_name))

    def heatmap_of_input(self, model_input: np.ndarray, class_index: int) -> np.ndarray:
        """The same for an image already at the model's input size."""
        from tf_keras_vis.utils.scores import CategoricalScore

        pixels = np.asarray(model_input, np.float32)[None]
        score = CategoricalScore([class_index])
        cam = self._gradcam(score, pixels, penultimate_layer=self.entry.gradcam_layer, seek_penultimate_conv_layer=False,
                            normalize_cam=False)
        cam = np.nan_to_num(np.maximum(np.asarray(cam)[0], 0.0))
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
