"""Export of a trained Keras model to its served file (serving.model_file describes the format).

TensorFlow and Keras are imported here, never where a request runs."""
from __future__ import annotations

import logging
from pathlib import Path

from lungfake.errors import ModelIntegrityError
from lungfake.serving.model_file import (
    ACTIVATIONS,
    CLASS_MAPS,
    FLOAT16_MIN_WEIGHTS,
    HEAD_DROPOUT,
    OUTPUT_LAYER,
    POOLED,
    POOLED_FEATURES_LAYER,
    PROBABILITIES,
)

log = logging.getLogger(__name__)


def check_head(model, arch: str, gradcam_layer: str) -> None:
    """The model must end feature map (the Grad-CAM layer) -> pool -> [dropout] -> probabilities: Grad-CAM of such a
    head is its class maps (cam.gradcam), and the pooled features are the feature map's mean."""
    pool, output = model.get_layer(POOLED_FEATURES_LAYER), model.get_layer(OUTPUT_LAYER)
    before_output = output.input
    if HEAD_DROPOUT in {layer.name for layer in model.layers}:
        dropout = model.get_layer(HEAD_DROPOUT)
        before_output = pool.output if dropout.input is pool.output and output.input is dropout.output else None
    if pool.input is not model.get_layer(gradcam_layer).output or before_output is not pool.output:
        raise ModelIntegrityError(f"Model {arch} does not end {gradcam_layer} -> {POOLED_FEATURES_LAYER} -> "
                                  f"{OUTPUT_LAYER}; retrain it with python -m lungfake train.")


def served_view(model, gradcam_layer: str, scorecam_layer: str = ""):
    """The trained network with the outputs a served file carries (the activations of scorecam_layer too, if named);
    its weights are the model's own."""
    import keras

    check_head(model, model.name, gradcam_layer)
    head = model.get_layer(OUTPUT_LAYER)
    class_maps = keras.layers.Dense(head.units, use_bias=False, name=CLASS_MAPS)
    maps = class_maps(model.get_layer(gradcam_layer).output)
    class_maps.set_weights([head.get_weights()[0]])
    outputs = {PROBABILITIES: model.output, POOLED: model.get_layer(POOLED_FEATURES_LAYER).output, CLASS_MAPS: maps}
    if scorecam_layer:
        outputs[ACTIVATIONS] = model.get_layer(scorecam_layer).output
    return keras.Model(model.input, outputs, name=f"{model.name}_served")


def served_model_bytes(model, gradcam_layer: str, float16: bool = True, scorecam_layer: str = "") -> bytes:
    """The served file's contents: large weight tensors as float16 (FLOAT16_MIN_WEIGHTS) unless float16 is False,
    which the tests use to compare exactly."""
    import tensorflow as tf

    data = tf.lite.TFLiteConverter.from_keras_model(served_view(model, gradcam_layer, scorecam_layer)).convert()
    return with_float16_weights(data, FLOAT16_MIN_WEIGHTS) if float16 else data


def with_float16_weights(data: bytes, min_weights: int) -> bytes:
    """A float32 LiteRT file with every constant float32 tensor of at least min_weights values stored as float16, and
    a DEQUANTIZE op that widens it back to float32 when the interpreter prepares the model (as the converter's own
    float16 option does for every tensor)."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    dequantize = schema.OperatorCodeT()
    dequantize.builtinCode = dequantize.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    dequantize.version = 3  # the version with float16 input
    model.operatorCodes.append(dequantize)
    graph, widen = model.subgraphs[0], []
    for index, tensor in enumerate(list(graph.tensors)):
        buffer = model.buffers[tensor.buffer]
        if tensor.type != schema.TensorType.FLOAT32 or buffer.data is None or len(buffer.data) < 4 * min_weights:
            continue
        buffer.data = np.frombuffer(np.frombuffer(bytes(buffer.data), np.float32).astype(np.float16).tobytes(), np.uint8)
        half = schema.TensorT()
        half.shape, half.type, half.buffer, half.name = tensor.shape, schema.TensorType.FLOAT16, tensor.buffer, tensor.name + b"/float16"
        graph.tensors.append(half)
        tensor.buffer = 0  # buffer 0 is the empty one: the tensor is now the DEQUANTIZE op's output
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = len(model.operatorCodes) - 1, [len(graph.tensors) - 1], [index]
        widen.append(op)
    graph.operators = widen + graph.operators  # before every op that reads them
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def write_served_model(model, gradcam_layer: str, path: Path, float16: bool = True, scorecam_layer: str = "") -> Path:
    """Write the served file of a trained Keras model (pixels 0-255 in, see models.build_model) to path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(served_model_bytes(model, gradcam_layer, float16, scorecam_layer))
    log.info("wrote %s (%.1f MB, %s)", path, path.stat().st_size / 1e6, "large weights float16" if float16 else "float32")
    return path
