"""Model architectures, built flat so Grad-CAM can reach the last convolutional layer.

Every model takes RGB pixel values 0-255 at its input size and does its own
preprocessing, so no caller can feed it wrongly scaled pixels. Models trained from this
version on standardise each tile's colour first (``LabStandardisation``): LC25000's classes differ
in colour, and a model that sees colour learns it instead of tissue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungfake.classes import CLASS_NAMES

ARCHITECTURES = ("resnet50", "mobilenetv2", "densenet121")
# From scratch, keras.applications' BatchNorm momentum (0.99 / 0.999) leaves the moving
# statistics far behind the weights for hundreds of steps, so validation sits at chance.
BATCHNORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Architecture:
    name: str
    gradcam_layer: str
    preprocessing: str  # "lab_standardised" (see LabStandardisation); earlier models: "caffe", "tf"
    top_block: str = ""  # the first layer name of the last block: the randomisation check re-initialises from it on
    scorecam_layer: str = ""  # a stride-16 layer whose activations a served file also gives, for Score-CAM (cam.py)


ARCHITECTURE_SPECS = {
    "resnet50": Architecture("resnet50", "conv5_block3_out", "lab_standardised", "conv5_block3_1_conv", "conv4_block6_out"),
    "mobilenetv2": Architecture("mobilenetv2", "out_relu", "lab_standardised", "block_16_expand", "block_13_expand_relu"),
    "densenet121": Architecture("densenet121", "relu", "lab_standardised", "conv5_block16_0_bn", "pool4_relu"),
}
DISPLAY_NAMES = {"resnet50": "ResNet50", "mobilenetv2": "MobileNetV2", "densenet121": "DenseNet121"}
TEST_MODEL = Architecture("tiny", "last_conv", "lab_standardised", "last_conv", "conv1")  # a stand-in for tests, never served
TINY_MODEL_SEED = 100  # away from the seeds models.randomise_top draws from (0 up), so re-initialising changes it
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


_XYZ_FROM_RGB = None


def lab_standardisation_layer():
    """The registered Keras layer class (built on first use, so importing lungfake never imports keras)."""
    global _XYZ_FROM_RGB
    import keras
    import tensorflow as tf
    from skimage.color import colorconv

    if "lungfake>LabStandardisation" in keras.saving.get_custom_objects():
        return keras.saving.get_custom_objects()["lungfake>LabStandardisation"]
    xyz_from_rgb = np.asarray(colorconv.xyz_from_rgb, np.float32)
    white = np.asarray(colorconv.xyz_from_rgb.sum(axis=1), np.float32)  # D65 white: XYZ of RGB (1, 1, 1)

    @keras.saving.register_keras_serializable(package="lungfake")
    class LabStandardisation(keras.layers.Layer):
        """RGB 0-255 to CIELAB (sRGB, D65, as skimage.color.rgb2lab), then each tile's L, a and b
        standardised to zero mean and unit spread over the tile.

        What is left is where each tile is lighter, pinker or bluer than its own average: tissue.
        A tile whose colour statistics were moved (another lab's stain, another camera, or the
        colour-neutral test) gives the model nearly the same input.
        """

        def call(self, pixels):
            rgb = tf.clip_by_value(tf.cast(pixels, tf.float32) / 255.0, 0.0, 1.0)
            linear = tf.where(rgb <= 0.04045, rgb / 12.92, tf.pow((rgb + 0.055) / 1.055, 2.4))
            xyz = tf.einsum("...c,kc->...k", linear, tf.constant(xyz_from_rgb)) / tf.constant(white)
            f = tf.where(xyz > (6 / 29) ** 3, tf.pow(tf.maximum(xyz, 1e-8), 1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
            lab = tf.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
            mean, variance = tf.nn.moments(lab, axes=[1, 2], keepdims=True)
            return (lab - mean) / tf.sqrt(variance + 1.0)  # +1: a flat tile stays flat instead of amplifying noise

    return LabStandardisation


def register_custom_layers() -> None:
    """Make the layers lungfake models use known to Keras (before loading a model file)."""
    lab_standardisation_layer()


def _preprocess(pixels, preprocessing: str):
    if preprocessing != "lab_standardised":
        raise ValueError(f"Models are built with lab_standardised input now, not {preprocessing!r}.")
    return lab_standardisation_layer()(name="preprocess_lab_standardised")(pixels)


def _backbone(arch: str, inputs, input_size: int, init: str):
    import keras

    weights = "imagenet" if init == "imagenet" else None
    shape = (input_size, input_size, 3)
    build = {"resnet50": keras.applications.ResNet50, "mobilenetv2": keras.applications.MobileNetV2,
             "densenet121": keras.applications.DenseNet121}[arch]
    return build(include_top=False, weights=weights, input_tensor=inputs, input_shape=shape)


def build_model(arch: str, input_size: int, init: str = "scratch", dropout: float = 0.2, n_classes: int | None = None):
    """A flat Keras classifier: pixels 0-255 in, class probabilities (registry order) out."""
    import keras

    if arch == TEST_MODEL.name:
        return build_tiny_model(input_size, n_classes)
    if arch not in ARCHITECTURE_SPECS:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {ARCHITECTURES}.")
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
    """A small convnet with the same contract (pixels 0-255 in, probabilities out), for tests. Its initial weights
    are seeded: tests of the untrained model read its answers (a third sure of each class, say), which a random draw
    broke now and then."""
    import keras

    def seeded(seed):
        return keras.initializers.GlorotUniform(seed=TINY_MODEL_SEED + seed)

    pixels = keras.Input((input_size, input_size, 3), name="pixels")
    x = _preprocess(pixels, TEST_MODEL.preprocessing)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1", kernel_initializer=seeded(1))(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv", kernel_initializer=seeded(2))(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(n_classes or len(CLASS_NAMES), activation="softmax", name="probabilities",
                                 kernel_initializer=seeded(3))(x)
    return keras.Model(pixels, outputs, name="tiny")


def randomise_top(model, first_layer: str, seed: int = 0) -> int:
    """Re-initialise, in place, every layer from first_layer to the output as a new model's would be (the model-
    parameter randomisation check of Adebayo et al. 2018): kernels from each layer's own initialiser, biases and
    shifts 0, scales and variances 1. Returns how many layers changed."""
    import keras

    names = [layer.name for layer in model.layers]
    changed = 0
    for offset, layer in enumerate(model.layers[names.index(first_layer):]):
        if not layer.weights:
            continue
        fresh = []
        for weight in layer.weights:
            kind = weight.path.rsplit("/", 1)[-1]
            if kind in ("gamma", "moving_variance"):
                fresh.append(np.ones(weight.shape, np.float32))
            elif kind in ("kernel", "depthwise_kernel"):  # a depthwise layer's is its depthwise_initializer
                initialiser = getattr(layer, "depthwise_initializer", None) or layer.kernel_initializer
                initialiser = keras.initializers.get({"class_name": type(initialiser).__name__,
                                                      "config": {**initialiser.get_config(), "seed": seed + offset}})
                fresh.append(np.asarray(initialiser(weight.shape), np.float32))
            else:  # bias, beta, moving_mean
                fresh.append(np.zeros(weight.shape, np.float32))
        layer.set_weights(fresh)
        changed += 1
    return changed
