"""Turning an uploaded or given file into RGB pixels, safely, and into model input.

The same function serves the app and the command line, so both refuse the same
files with the same messages.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lungfake.errors import ImageDecodeError

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 6,300 x 6,300 scan; beyond that a file is refused as a decompression bomb
MIN_SIDE = 16
WORKING_SIDE = 1024  # larger images are reduced to this before anything else touches them
SCALED_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass(frozen=True)
class DecodeLimits:
    """What one kind of upload may be: the file size, the side it is reduced to (None: kept at full
    resolution), and the words the refusals use."""
    max_file_bytes: int
    max_side: int | None
    noun: str
    advice: str
    shrink: float = 1.0  # without a max_side: keep this share of the image's size (a region at a coarser scale)

    def target_side(self, width: int, height: int) -> int | None:
        """The longest side the decoded image is reduced to (None: kept whole)."""
        if self.max_side:
            return self.max_side
        return max(MIN_SIDE, int(round(max(width, height) * self.shrink))) if self.shrink < 1 else None


TILE = DecodeLimits(MAX_FILE_BYTES, WORKING_SIDE, "tile", "upload a single tile")
# A region is kept at the resolution its tiles need (region.decode_region sets shrink), at most MAX_PIXELS.
REGION = DecodeLimits(100 * 1024 * 1024, None, "region", "export a smaller region, or save it as JPEG")


def _scaled_to_8bit(image: Image.Image, max_side: int | None = WORKING_SIDE) -> Image.Image:
    """16-bit, 32-bit and float images stretched to 8-bit grey, block-averaged down to the working size first
    (when there is one) so that a large scan never exists as a full-size float array."""
    values = np.asarray(image)
    step = max(1, math.ceil(max(values.shape[:2]) / max_side)) if max_side else 1
    if step > 1:
        height, width = (values.shape[0] // step) * step, (values.shape[1] // step) * step
        values = values[:height, :width].reshape(height // step, step, width // step, step).mean(axis=(1, 3), dtype=np.float32)
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = values.min(), values.max()
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _to_8bit_rgb(image: Image.Image, max_side: int | None = WORKING_SIDE) -> Image.Image:
    if image.mode in SCALED_MODES:
        image = _scaled_to_8bit(image, max_side)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def decode_image(data: bytes, name: str = "upload", limits: DecodeLimits = TILE) -> np.ndarray:
    """RGB uint8 pixels of an image file's bytes, EXIF-upright, first frame, reduced to the limits' side;
    or ImageDecodeError."""
    if not data:
        raise ImageDecodeError(f"{name} is empty; choose an image file (JPEG, PNG or TIFF).")
    if len(data) > limits.max_file_bytes:
        raise ImageDecodeError(f"{name} is larger than {limits.max_file_bytes // 2**20} MB; {limits.advice}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageDecodeError(
                        f"{name} is {width}x{height} pixels, too large to be a {limits.noun}; crop a region of interest "
                        f"(at most {MAX_PIXELS // 1_000_000} megapixels)."
                    )
                side = limits.target_side(width, height)
                if image.format == "JPEG" and side:  # decodes at 1/2, 1/4 or 1/8 scale when that suffices
                    image.draft("RGB", (side, side))
                image.seek(0)
                image.load()
                image = ImageOps.exif_transpose(image)
                if image.mode in SCALED_MODES:  # thumbnail cannot resample these; make them 8-bit first
                    image = _to_8bit_rgb(image, side)
                if side and max(image.size) > side:
                    image.thumbnail((side, side), Image.Resampling.LANCZOS)
                rgb = _to_8bit_rgb(image, side)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(
            f"{name} declares too many pixels to be a {limits.noun} (a possible decompression bomb); "
            f"upload a crop of at most {MAX_PIXELS // 1_000_000} megapixels."
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name} is not an image lungfake can read; upload a JPEG, PNG or TIFF {limits.noun}.") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, TypeError, IndexError, KeyError, ArithmeticError):
        # ArithmeticError: PIL divides by and converts what a damaged header declares (a zero, an offset past 2**63)
        raise ImageDecodeError(f"{name} is damaged or truncated and cannot be read; export the {limits.noun} again.") from None
    if min(rgb.size) < MIN_SIDE:
        raise ImageDecodeError(
            f"{name} is only {rgb.size[0]}x{rgb.size[1]} pixels; a {limits.noun} must be at least {MIN_SIDE} pixels on each side."
        )
    return np.asarray(rgb, dtype=np.uint8)


UPLOAD_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"}  # what a user may hand in


def expand_folders(paths: list[str]) -> list[str]:
    """Each path as given, except that a folder stands for the image files under it (any depth, sorted,
    hidden files and folders skipped): "score this folder" is what a user with a case's tiles asks."""
    expanded = []
    for path in paths:
        folder = Path(path)
        if not folder.is_dir():
            expanded.append(path)
            continue
        found = sorted(str(f) for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in UPLOAD_SUFFIXES
                       and not any(part.startswith(".") for part in f.relative_to(folder).parts))
        if not found:
            raise ImageDecodeError(f"{path} is a folder with no image files ({', '.join(sorted(UPLOAD_SUFFIXES))}) "
                                   "in it; pass the tiles' files or the folder that holds them.")
        expanded += found
    return expanded


def read_image_file(path: str | Path) -> np.ndarray:
    """decode_image for a file on disk, with the same errors (also for a missing file)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise ImageDecodeError(f"{path} cannot be opened; check the path and permissions.") from None
    return decode_image(data, name=str(path))


def to_model_input(rgb: np.ndarray, input_size: int) -> np.ndarray:
    """float32 pixels 0-255 at the model's input size, resized as the training tiles were."""
    image = Image.fromarray(rgb)
    if image.size != (input_size, input_size):
        image = image.resize((input_size, input_size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)
