"""Model architectures, built flat so Grad-CAM can reach the last convolutional layer.

Every model takes RGB pixel values 0-255 at its input size and does its own
preprocessing, so no caller can feed it wrongly scaled pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import CLASS_NAMES

ARCHITECTURES = ("resnet50", "mobilenetv2")
# From scratch, keras.applications' BatchNorm momentum (0.99 / 0.999) leaves the moving
# statistics far behind the weights for hundreds of steps, so validation sits at chance.
BATCHNORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Architecture:
    name: str
    gradcam_layer: str
    preprocessing: str  # "caffe": BGR minus ImageNet mean; "tf": scaled to [-1, 1]


ARCHITECTURE_SPECS = {
    "resnet50": Architecture("resnet50", "conv5_block3_out", "caffe"),
    "mobilenetv2": Architecture("mobilenetv2", "out_relu", "tf"),
    # A few-thousand-parameter stand-in with the same contract, so tests train in seconds.
    "tiny": Architecture("tiny", "last_conv", "tf"),
}
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def _preprocess(pixels, preprocessing: str):
    import keras

    if preprocessing == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess_scale")(pixels)
    # Channel reversal as a fixed, non-trainable permutation keeps the model free of
    # Lambda layers, so it loads in Keras safe mode.
    to_bgr = keras.layers.Dense(3, use_bias=False, trainable=False, name="preprocess_rgb_to_bgr")
    bgr = to_bgr(pixels)
    to_bgr.set_weights([np.eye(3, dtype="float32")[::-1]])
    return keras.layers.Normalization(
        mean=list(_IMAGENET_BGR_MEAN), variance=[1.0, 1.0, 1.0], name="preprocess_centre"
    )(bgr)


def _backbone(arch: str, inputs, input_size: int, init: str):
    import keras

    weights = "imagenet" if init == "imagenet" else None
    shape = (input_size, input_size, 3)
    if arch == "resnet50":
        return keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=inputs, input_shape=shape)
    return keras.applications.MobileNetV2(include_top=False, weights=weights, input_tensor=inputs, input_shape=shape)


def build_model(arch: str, input_size: int, init: str = "scratch", dropout: float = 0.2, n_classes: int | None = None):
    """A flat Keras classifier: pixels 0-255 in, class probabilities (registry order) out."""
    import keras

    if arch not in ARCHITECTURE_SPECS:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {ARCHITECTURES}.")
    if arch == "tiny":
        return build_tiny_model(input_size, n_classes)
    spec = ARCHITECTURE_SPECS[arch]
    pixels = keras.Input((input_size, input_size, 3), name="pixels")
    backbone = _backbone(arch, _preprocess(pixels, spec.preprocessing), input_size, init)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BATCHNORM_MOMENTUM
    features = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    outputs = keras.layers.Dense(n_classes or len(CLASS_NAMES), activation="softmax", name="probabilities")(features)
    return keras.Model(pixels, outputs, name=arch)


def build_tiny_model(input_size: int = 32, n_classes: int | None = None):
    """A small convnet with the same contract (pixels 0-255 in, probabilities out), for tests."""
    import keras

    pixels = keras.Input((input_size, input_size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess_scale")(pixels)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(n_classes or len(CLASS_NAMES), activation="softmax", name="probabilities")(x)
    return keras.Model(pixels, outputs, name="tiny")
