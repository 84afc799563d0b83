"""Property-based: whatever bytes arrive, the input path returns pixels or raises ImageDecodeError."""
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lungfake.errors import ImageDecodeError
from lungfake.images import decode_image

MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "I", "F", "I;16"]
FORMATS = {"PNG": ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
           "TIFF": ["1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16"], "GIF": ["L", "P"], "BMP": ["1", "L", "P", "RGB"]}


def _decode_or_refuse(data: bytes) -> None:
    try:
        rgb = decode_image(data, "hypothesis.bin")
    except ImageDecodeError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@st.composite
def encoded_images(draw):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    width, height = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    _decode_or_refuse(data)


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(encoded_images(), st.data())
def test_truncated_and_corrupted_images(data, draw):
    _decode_or_refuse(data)
    cut = draw.draw(st.integers(0, len(data)))
    _decode_or_refuse(data[:cut])
    position = draw.draw(st.integers(0, max(0, len(data) - 1)))
    flipped = bytearray(data)
    if flipped:
        flipped[position] ^= draw.draw(st.integers(1, 255))
    _decode_or_refuse(bytes(flipped))


def test_multi_frame_gif_and_tiff_use_the_first_frame():
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    for fmt in ("GIF", "TIFF"):
        buffer = io.BytesIO()
        frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:])
        rgb = decode_image(buffer.getvalue())
        assert rgb.shape == (30, 40, 3) and rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 50
