import io

import numpy as np
import pytest
from PIL import Image

from lungfake.errors import ImageDecodeError
from lungfake.serving.images import decode_image, to_model_input
from tests.helpers import texture


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_common_mode_becomes_rgb(mode):
    if mode in ("I;16", "I", "F"):
        deep = Image.fromarray(texture(1, 64)[..., 0].astype(np.uint16) * 200)
        image = deep if mode == "I;16" else deep.convert(mode)
    else:
        image = Image.fromarray(texture(1, 64)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16", "I", "F") else "PNG"
    rgb = decode_image(_encode(image, fmt))
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)


def test_exif_orientation_is_applied():
    image = Image.fromarray(texture(2, 64)[:, :48])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    rgb = decode_image(_encode(image, "JPEG", exif=exif))
    assert rgb.shape == (48, 64, 3)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"GIF89a this is not really an image", "not an image|damaged"),
        (b"%PDF-1.4 hello", "not an image"),
    ],
)
def test_bad_bytes_are_clear_errors(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data, "upload.jpg")


def test_truncated_jpeg_and_tiny_and_huge_images():
    full = _encode(Image.fromarray(texture(3, 128)), "JPEG")
    with pytest.raises(ImageDecodeError, match="damaged or truncated"):
        decode_image(full[: len(full) // 2], "cut.jpg")
    with pytest.raises(ImageDecodeError, match="at least"):
        decode_image(_encode(Image.new("RGB", (1, 1)), "PNG"), "dot.png")
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(_encode(Image.new("1", (20000, 20000)), "PNG"), "bomb.png")


def test_large_images_are_reduced_and_model_input_is_resized():
    rgb = decode_image(_encode(Image.new("RGB", (3000, 2000), (200, 100, 150)), "JPEG"))
    assert max(rgb.shape[:2]) <= 1024
    pixels = to_model_input(rgb, 128)
    assert pixels.shape == (128, 128, 3) and pixels.dtype == np.float32 and pixels.max() <= 255
