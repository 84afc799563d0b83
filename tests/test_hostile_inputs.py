"""Property-based: whatever bytes arrive, the input path returns pixels or raises ImageDecodeError."""
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from lungfake.errors import ImageDecodeError
from lungfake.serving.images import decode_image

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


ALL_MODES = ["1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA", "I", "F",
             "I;16", "I;16L", "I;16B"]
# Orientations 5-8 swap width and height.
SWAPS = {1: False, 2: False, 3: False, 4: False, 5: True, 6: True, 7: True, 8: True}


def _in_mode(mode: str, width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    if mode.startswith("I;16"):
        sixteen_bit = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
        return sixteen_bit if mode == "I;16" else sixteen_bit.convert(mode)
    return Image.fromarray(pixels).convert(mode)


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_MODES), st.sampled_from(["PNG", "TIFF", "JPEG", "WEBP", "BMP", "GIF"]), st.integers(16, 64),
       st.integers(16, 64), st.integers(1, 8))
def test_every_mode_and_exif_orientation(mode, fmt, width, height, orientation):
    image = _in_mode(mode, width, height, width * height)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, exif=exif)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format, so no upload can carry it either
    rgb = decode_image(buffer.getvalue(), f"x.{fmt.lower()}")
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    written_orientation = Image.open(io.BytesIO(buffer.getvalue())).getexif().get(0x0112, 1)
    expected = (width, height) if SWAPS.get(written_orientation, False) else (height, width)
    assert rgb.shape[:2] == expected


def _png_declaring(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims the given size."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 180)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


@settings(max_examples=80, deadline=5000)
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_declared_huge_dimensions_are_refused_or_decoded_fast(width, height):
    _decode_or_refuse(_png_declaring(width, height))


# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's size at fork.
DECODE_ONE = r"""
import sys, time
from lungfake.errors import ImageDecodeError
from lungfake.serving.images import decode_image

def peak_mb():
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    return int(status.split()[0]) / 1024

data = open(sys.argv[1], "rb").read()
before = peak_mb()
started = time.perf_counter()
try:
    decode_image(data, "case")
    outcome = "decoded"
except ImageDecodeError:
    outcome = "refused"
print(outcome, time.perf_counter() - started, peak_mb() - before)
"""


def _worst_cases(folder):
    """The largest images the decoder accepts, in several formats, and files it must refuse."""
    from lungfake.serving.images import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) - 1
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    smooth = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side))], axis=2)
    smooth = smooth.astype(np.uint8)
    noisy = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    cases = {
        "40MP.png": (Image.fromarray(smooth), "PNG", {}),
        "40MP.tif": (Image.fromarray(smooth), "TIFF", {"compression": "tiff_lzw"}),
        "40MP_noise.jpg": (Image.fromarray(noisy), "JPEG", {"quality": 75}),
        "40MP_16bit.png": (Image.fromarray(smooth[..., 0].astype(np.uint16) * 257), "PNG", {}),
        "40MP_noise.png": (Image.fromarray(noisy), "PNG", {}),  # over the file-size limit
        "144MP_bomb.png": (Image.new("RGB", (12000, 12000), (255, 255, 255)), "PNG", {}),
    }
    for name, (image, fmt, options) in cases.items():
        image.save(folder / name, fmt, **options)
    return sorted(cases)


@pytest.mark.slow  # writes and decodes 40-megapixel images
def test_worst_case_images_stay_under_five_seconds_and_one_gigabyte(tmp_path):
    """Each worst case decoded in a fresh process; memory is that process's peak growth while decoding."""
    import subprocess
    import sys

    from tests.helpers import REPO

    measured = {}
    for name in _worst_cases(tmp_path):
        run = subprocess.run([sys.executable, "-c", DECODE_ONE, str(tmp_path / name)], capture_output=True, text=True,
                             cwd=REPO, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        outcome, seconds, grown_mb = run.stdout.split()
        measured[name] = outcome
        assert float(seconds) < 5, f"{name} took {seconds} s"
        assert float(grown_mb) < 1024, f"{name} grew memory by {grown_mb} MB"
        print(f"{name}: {outcome} in {float(seconds):.2f} s, +{float(grown_mb):.0f} MB")
    assert measured["144MP_bomb.png"] == "refused" and measured["40MP_noise.png"] == "refused"
    assert measured["40MP.png"] == measured["40MP_noise.jpg"] == "decoded"
