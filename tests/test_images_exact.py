"""The decoder's exact outputs: what each mode, size and limit turns into, pixel for pixel where it matters."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungfake.errors import ImageDecodeError
from lungfake.serving.images import (
    MIN_SIDE,
    REGION,
    TILE,
    WORKING_SIDE,
    DecodeLimits,
    _scaled_to_8bit,
    _to_8bit_rgb,
    decode_image,
    expand_folders,
    read_image_file,
    to_model_input,
)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_deep_images_are_stretched_to_the_full_8_bit_range():
    values = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    grey = _scaled_to_8bit(Image.fromarray(values), max_side=None)
    assert grey.mode == "L"
    expected = (values.astype(np.float32) - 1000) * (255.0 / 4000)
    assert np.array_equal(np.asarray(grey), expected.astype(np.uint8))  # 0, 63, 127, 255


def test_a_flat_deep_image_becomes_black_and_nan_and_infinity_count_as_zero():
    assert not np.asarray(_scaled_to_8bit(Image.fromarray(np.full((3, 3), 7.5, np.float32)), None)).any()
    values = np.array([[np.nan, np.inf], [-np.inf, 10.0]], np.float32)
    assert np.array_equal(np.asarray(_scaled_to_8bit(Image.fromarray(values), None)), [[0, 0], [0, 255]])


def test_a_large_deep_image_is_block_averaged_before_scaling():
    values = np.zeros((8, 12), np.float32)
    values[:4, :4] = 4.0  # one block of 4x4 at step 4 (12 / 3 = 4 for a working side of 3)
    values[4:, 8:] = 2.0
    grey = np.asarray(_scaled_to_8bit(Image.fromarray(values), max_side=3))
    assert grey.shape == (2, 3)
    assert np.array_equal(grey, [[255, 0, 0], [0, 0, 127]])
    uneven = np.arange(9 * 13, dtype=np.float32).reshape(9, 13)  # the rows and columns past whole blocks are cut
    assert np.asarray(_scaled_to_8bit(Image.fromarray(uneven), max_side=4)).shape == (2, 3)
    assert np.asarray(_scaled_to_8bit(Image.fromarray(uneven), max_side=13)).shape == (9, 13)  # step 1: kept whole


def test_transparency_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 20, 255)  # opaque: its own colour
    rgba[0, 1] = (200, 10, 20, 0)  # transparent: white
    rgba[1, 0] = (0, 0, 0, 128)  # half: half-way to white
    rgb = np.asarray(_to_8bit_rgb(Image.fromarray(rgba, "RGBA")))
    assert tuple(rgb[0, 0]) == (200, 10, 20) and tuple(rgb[0, 1]) == (255, 255, 255)
    assert tuple(rgb[1, 0]) == (127, 127, 127)
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA")
    assert np.array_equal(np.asarray(_to_8bit_rgb(la)), [[[255, 255, 255], [50, 50, 50]]])


def test_a_palette_image_with_a_transparent_entry_shows_white_there():
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.array_equal(np.asarray(_to_8bit_rgb(palette)), [[[255, 255, 255], [200, 100, 50]]])
    assert _to_8bit_rgb(Image.fromarray(np.array([[1000]], np.uint16))).mode == "RGB"


def test_a_tile_larger_than_the_working_side_is_reduced_to_it_and_a_region_kept_whole():
    wide = _encode(Image.new("RGB", (2 * WORKING_SIDE, 600), (200, 100, 150)), "PNG")
    assert decode_image(wide).shape == (300, WORKING_SIDE, 3)  # thumbnail keeps the aspect
    assert decode_image(wide, limits=REGION).shape == (600, 2 * WORKING_SIDE, 3)
    small = _encode(Image.new("RGB", (WORKING_SIDE, 40), (200, 100, 150)), "PNG")
    assert decode_image(small).shape == (40, WORKING_SIDE, 3)  # at the working side: kept


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_then_reduced_to_the_working_side():
    photo = _encode(Image.new("RGB", (4 * WORKING_SIDE, 2 * WORKING_SIDE), (180, 90, 160)), "JPEG", quality=90)
    rgb = decode_image(photo)
    assert rgb.shape == (WORKING_SIDE // 2, WORKING_SIDE, 3)
    assert np.abs(rgb.astype(int) - (180, 90, 160)).max() <= 3


def test_a_region_may_be_shrunk_by_a_share_of_its_size():
    limits = DecodeLimits(REGION.max_file_bytes, None, "region", "advice", shrink=0.25)
    assert limits.target_side(400, 300) == 100 and DecodeLimits(1, None, "x", "y").target_side(400, 300) is None
    assert TILE.target_side(5000, 10) == WORKING_SIDE
    assert DecodeLimits(1, None, "x", "y", shrink=0.001).target_side(400, 300) == MIN_SIDE
    rgb = decode_image(_encode(Image.new("RGB", (400, 300), (90, 60, 120)), "PNG"), limits=limits)
    assert rgb.shape == (75, 100, 3)


def test_the_smallest_side_is_checked_after_decoding():
    assert decode_image(_encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), "PNG")).shape == (MIN_SIDE, MIN_SIDE, 3)
    with pytest.raises(ImageDecodeError, match=f"x.png is only {MIN_SIDE - 1}x40 pixels; a tile must be at least {MIN_SIDE}"):
        decode_image(_encode(Image.new("RGB", (MIN_SIDE - 1, 40)), "PNG"), "x.png")
    with pytest.raises(ImageDecodeError, match="a region must be at least"):
        decode_image(_encode(Image.new("RGB", (40, MIN_SIDE - 1)), "PNG"), "x.png", REGION)


def test_refusals_name_the_file_and_say_what_to_do():
    with pytest.raises(ImageDecodeError, match="^scan.tif is empty; choose an image file \\(JPEG, PNG or TIFF\\).$"):
        decode_image(b"", "scan.tif")
    with pytest.raises(ImageDecodeError, match="^notes.txt is not an image lungfake can read; upload a JPEG, PNG or TIFF tile.$"):
        decode_image(b"hello, not an image at all", "notes.txt")
    with pytest.raises(ImageDecodeError, match="^big.png is larger than 50 MB; upload a single tile.$"):
        decode_image(bytes(TILE.max_file_bytes + 1), "big.png")
    assert decode_image(_encode(Image.new("RGB", (20, 20), (1, 2, 3)), "PNG"), "ok.png")[0, 0].tolist() == [1, 2, 3]


def test_model_input_is_resized_bilinearly_and_kept_when_already_at_size():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, 2:] = 200
    same = to_model_input(rgb, 4)
    assert same.dtype == np.float32 and np.array_equal(same, rgb.astype(np.float32))
    half = to_model_input(rgb, 2)
    expected = np.asarray(Image.fromarray(rgb).resize((2, 2), Image.Resampling.BILINEAR), np.float32)
    assert np.array_equal(half, expected)
    assert not np.array_equal(half, np.asarray(Image.fromarray(rgb).resize((2, 2), Image.Resampling.NEAREST), np.float32))


def test_a_folder_stands_for_its_image_files_sorted_at_any_depth_hidden_ones_skipped(tmp_path):
    for name in ("b.png", "a.JPG", "deep/c.tif", ".hidden.png", ".cache/d.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = expand_folders([str(tmp_path), "single.png"])
    assert [Path(p).relative_to(tmp_path).as_posix() for p in found[:-1]] == ["a.JPG", "b.png", "deep/c.tif"]
    assert found[-1] == "single.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDecodeError, match="empty is a folder with no image files"):
        expand_folders([str(tmp_path / "empty")])


def test_a_file_that_cannot_be_opened_is_a_decode_error_naming_it(tmp_path):
    with pytest.raises(ImageDecodeError, match="missing.png cannot be opened; check the path and permissions."):
        read_image_file(tmp_path / "missing.png")
    Image.new("RGB", (20, 20), (9, 8, 7)).save(tmp_path / "ok.png")
    assert read_image_file(tmp_path / "ok.png")[5, 5].tolist() == [9, 8, 7]


def test_a_tiff_whose_damaged_header_declares_an_offset_past_any_file_is_refused():
    """Found by the property test: one flipped bit made PIL seek past 2**63 and raise OverflowError."""
    tiff = bytearray(b"II*\x00\x08\x00\x00\x00\x08\x00\x00\x01\x04\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x01\x04\x00\x01"
                     b"\x00\x00\x00\x08\x00\x00\x00\x03\x01\x03\x00\x01\x00\x00\x00\x01\x00\x00\x00\x06\x01\x03\x00\x01\x00"
                     b"\x00\x00\x01\x00\x00\x00\x11\x01\x04\x00\x01\x00\x00\x00n\x00\x00\x00\x16\x01\x04\x00\x01\x00\x00\x00"
                     b"\x08\x00\x00\x00\x17\x01\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00\x1c\x01\x03\x00\x01\x00\x00\x00\x01"
                     b"\x00\x00\x00\x00\x00\x00\x00\x80\x80\x00\x80\x00\x80\x00\x80")
    tiff[60] ^= 20
    with pytest.raises(ImageDecodeError, match="damaged or truncated"):
        decode_image(bytes(tiff), "scan.tif")
