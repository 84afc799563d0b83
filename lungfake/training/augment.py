"""Training augmentation (TensorFlow ops, one tile at a time inside tf.data).

What another lab's slides do to a tile, drawn at random: another magnification (0.6-1.6x), any
orientation, other amounts of haematoxylin and eosin and slightly other stain colours (HED space,
as Tellez et al. 2019), another camera's gamma, brightness and contrast, focus blur and JPEG.
Shifts of a tile's overall colour statistics need no augmentation: the models standardise each
tile's colour at input (``models.LabStandardisation``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import hed_from_rgb, rgb_from_hed


@dataclass(frozen=True)
class Augmentation:
    magnification: tuple[float, float] = (0.6, 1.6)
    stain_scale: tuple[float, float] = (0.65, 1.35)  # per stain, multiplies its concentration
    stain_shift: float = 0.05  # added to each stain's concentration (optical density units)
    stain_vector_jitter: float = 0.05  # perturbs each stain's colour (rgb_from_hed rows)
    gamma: tuple[float, float] = (0.65, 1.55)
    brightness: float = 0.08
    contrast: tuple[float, float] = (0.75, 1.25)
    blur_probability: float = 0.3
    max_blur_sigma: float = 1.5
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_probability: float = 0.5


def zoom_crop(image, output_size: int, magnification: tuple[float, float]):
    """A square cut out at a random magnification (below 1: the tile mirrored outward at its edges)
    and resized to output_size. image: (h, w, 3) uint8."""
    import tensorflow as tf

    size = tf.cast(tf.shape(image)[0], tf.float32)
    pad = tf.cast(tf.shape(image)[0] // 2, tf.int32)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    padded_size = tf.cast(tf.shape(padded)[0], tf.float32)
    zoom = tf.exp(tf.random.uniform((), np.log(magnification[0]), np.log(magnification[1])))
    side = size / zoom
    centre = tf.cast(pad, tf.float32) + size / 2 + tf.random.uniform((2,), -1.0, 1.0) * tf.maximum(size - side, 0.0) / 2
    box = tf.stack([centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2]) / padded_size
    crop = tf.image.crop_and_resize(tf.cast(padded[None], tf.float32), box[None], [0], [output_size, output_size])
    return crop[0]


def stain_jitter(rgb, recipe: Augmentation):
    """rgb in [0, 1]: each stain's concentration scaled and shifted, each stain's colour perturbed."""
    import tensorflow as tf

    optical_density = -tf.math.log(tf.clip_by_value(rgb, 1e-3, 1.0))
    stains = tf.einsum("...c,ck->...k", optical_density, tf.constant(hed_from_rgb, tf.float32))
    scale = tf.random.uniform((3,), *recipe.stain_scale)
    shift = tf.random.uniform((3,), -recipe.stain_shift, recipe.stain_shift)
    stains = stains * scale + shift
    vectors = tf.constant(rgb_from_hed, tf.float32) + tf.random.uniform((3, 3), -recipe.stain_vector_jitter, recipe.stain_vector_jitter)
    vectors = tf.maximum(vectors, 0.0)
    vectors = vectors / tf.norm(vectors, axis=1, keepdims=True)
    return tf.exp(-tf.einsum("...k,kc->...c", stains, vectors))


def camera_jitter(rgb, recipe: Augmentation):
    import tensorflow as tf

    gamma = tf.exp(tf.random.uniform((), np.log(recipe.gamma[0]), np.log(recipe.gamma[1])))
    rgb = tf.pow(tf.clip_by_value(rgb, 0.0, 1.0), gamma)
    rgb = tf.image.random_brightness(rgb, recipe.brightness)
    return tf.clip_by_value(tf.image.random_contrast(rgb, *recipe.contrast), 0.0, 1.0)


def random_blur(rgb, recipe: Augmentation):
    import tensorflow as tf

    sigma = tf.random.uniform((), 0.3, recipe.max_blur_sigma)
    radius = int(np.ceil(3 * recipe.max_blur_sigma))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / tf.reduce_sum(kernel)
    horizontal = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, 3, 1))
    vertical = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, 3, 1))
    padded = tf.pad(rgb[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, horizontal, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, vertical, [1, 1, 1, 1], "VALID")[0]
    return tf.cond(tf.random.uniform(()) < recipe.blur_probability, lambda: blurred, lambda: rgb)


def random_jpeg(rgb, recipe: Augmentation):
    import tensorflow as tf

    compressed = tf.image.random_jpeg_quality(rgb, *recipe.jpeg_quality)
    return tf.cond(tf.random.uniform(()) < recipe.jpeg_probability, lambda: compressed, lambda: rgb)


def augment_tile(image, output_size: int, recipe: Augmentation):
    """One training tile (h, w, 3 uint8) to an augmented (output_size, output_size, 3) float32 0-255."""
    import tensorflow as tf

    rgb = zoom_crop(image, output_size, recipe.magnification) / 255.0
    rgb = tf.image.random_flip_left_right(rgb)
    rgb = tf.image.rot90(rgb, tf.random.uniform((), 0, 4, dtype=tf.int32))
    rgb = stain_jitter(rgb, recipe)
    rgb = camera_jitter(rgb, recipe)
    rgb = random_blur(rgb, recipe)
    rgb = random_jpeg(tf.clip_by_value(rgb, 0.0, 1.0), recipe)
    rgb.set_shape((output_size, output_size, 3))
    return rgb * 255.0
