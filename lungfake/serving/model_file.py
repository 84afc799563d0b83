"""The served model file: a LiteRT (TensorFlow Lite) flatbuffer, large weights float16, written from a trained Keras model
by training.export.

Why this format (docs/decisions.md, "Served model files"): it loads in milliseconds with the small LiteRT runtime, so
a fresh server never imports TensorFlow or traces a graph, and float16 weights halve the files. Arithmetic stays
float32 (the weights are widened when the file loads).

One pass of a served file gives everything the app shows, under these signature names:
- ``probabilities``: the softmax, uncalibrated, in the registry's class order;
- ``pooled``: the globally averaged feature map, which the out-of-distribution screen reads;
- ``class_maps``: each class's dense-layer weights applied at every cell of the feature map before pooling, from
  which cam.py makes Grad-CAM without a gradient (see cam.gradcam);
- ``activations`` (files exported with a Score-CAM layer only, the registry's ``scorecam_layer``): that stride-16
  layer's output, whose channels cam.scorecam_class_maps lays over the tile as masks.
"""
from __future__ import annotations

PIXELS, PROBABILITIES, POOLED, CLASS_MAPS, ACTIVATIONS = "pixels", "probabilities", "pooled", "class_maps", "activations"
OUTPUTS = (PROBABILITIES, POOLED, CLASS_MAPS)  # every served file's; ACTIVATIONS is optional
POOLED_FEATURES_LAYER, OUTPUT_LAYER = "pool", "probabilities"  # the head every lungfake model ends with (models.py)
HEAD_DROPOUT = "head_dropout"  # between them in training; the identity at inference


# Tensors of fewer weights stay float32: biases, depthwise kernels and the stem carry most of float16's error and
# little of the size. Chosen on every third validation tile (docs/decisions.md, "Served model files"): with float16
# everywhere, calibrated probabilities moved by up to 7e-3 (MobileNetV2); from 32,768 weights up, by at most 6.3e-4
# (ResNet50), and the three files come to 67 MB.
FLOAT16_MIN_WEIGHTS = 32_768


