"""Whole-slide files (SVS, NDPI, MRXS, SCN, DICOM, generic tiled TIFF), read through OpenSlide in bounded memory.

Only what a request needs is ever read: a thumbnail (from the smallest pyramid level, in strips) and one tile at a
time from the pyramid level nearest the scale the models need; never a whole level.

Scale comes from the file (``openslide.mpp-x``/``-y``); a file without it, or with one no microscope gives, is
refused until the user states it. OpenSlide's known pitfalls (its generic-TIFF driver sees no pyramid stored in
SubIFDs, and reads a TIFF resolution only in inch or centimetre units) show up here as a missing or implausible
scale, which is refused, never guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lungfake.errors import SlideReadError, SlideScaleError

# Microscopes give about 0.1 um per pixel (100x oil) to 2 um (5x objectives); anything outside is not a slide's scale.
MIN_MICRONS_PER_PIXEL, MAX_MICRONS_PER_PIXEL = 0.08, 4.0
THUMBNAIL_SIDE = 1536
STRIP_ROWS = 512  # rows of a pyramid level read at once while the thumbnail is made
GLASS = 245  # what a tile's part beyond the slide's edge, or a transparent part of it, becomes


def _openslide():
    import openslide  # here: a tile or region request never needs the slide reader's library

    return openslide


@dataclass(frozen=True)
class SlideScale:
    """Microns per level-0 pixel, and where that figure came from."""
    microns_per_pixel: float
    source: str  # "the file's metadata" or "stated by the user"


def checked_scale(microns_per_pixel: float, source: str) -> SlideScale:
    if not (MIN_MICRONS_PER_PIXEL <= microns_per_pixel <= MAX_MICRONS_PER_PIXEL):
        raise SlideScaleError(
            f"The slide's scale ({microns_per_pixel:g} um per pixel, {source}) is not one a microscope gives "
            f"({MIN_MICRONS_PER_PIXEL}-{MAX_MICRONS_PER_PIXEL} um per pixel). State the scanner's scale (--mpp on the command line, "
            "'State the scale myself' on the page), for example 0.25 at 40x or 0.5 at 20x.")
    return SlideScale(float(microns_per_pixel), source)


class SlideFile:
    """An open whole-slide file: its levels, its scale, a thumbnail and tiles. Use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        openslide = _openslide()
        if not self.path.is_file():
            raise SlideReadError(f"{self.path.name} does not exist or is not a file; check the path.")
        try:
            detected = openslide.OpenSlide.detect_format(str(self.path))
        except openslide.OpenSlideError as exc:
            raise SlideReadError(f"{self.path.name} could not be read ({self._without_path(exc)}); the file may be "
                                 "damaged.") from None
        if detected is None:
            raise SlideReadError(f"{self.path.name} is not a whole-slide file OpenSlide can read (SVS, NDPI, MRXS, SCN, "
                                 "DICOM, VMS, BIF or tiled TIFF). For a photograph or an exported region use the region "
                                 "page (python -m lungfake region).")
        try:
            self._slide = openslide.OpenSlide(str(self.path))
            self._slide.read_region((0, 0), self._slide.level_count - 1, (1, 1))  # a damaged file fails here
        except openslide.OpenSlideError as exc:
            raise SlideReadError(f"{self.path.name} looks like a {detected} slide, but OpenSlide cannot read it "
                                 f"({self._without_path(exc)}). "
                                 f"{_format_advice(detected)}") from None
        self.format = detected

    def _without_path(self, exc: Exception) -> str:
        """The reader's message with the server's folders left out (a page never shows them)."""
        return str(exc).replace(f"Reading {self.path}: ", "").replace(str(self.path), self.path.name)

    def __enter__(self) -> SlideFile:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self._slide.close()

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        return tuple(self._slide.dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._slide.level_downsamples)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._slide.properties)

    def stated_microns_per_pixel(self) -> float | None:
        """The file's own microns per level-0 pixel (the mean of x and y), or None where it states none."""
        values = [self._slide.properties.get(f"openslide.mpp-{axis}") for axis in ("x", "y")]
        try:
            numbers = [float(v) for v in values if v not in (None, "")]
        except ValueError:
            return None
        return float(np.mean(numbers)) if numbers and all(n > 0 for n in numbers) else None

    def scale(self, stated_mpp: float | None = None) -> SlideScale:
        """The scale to tile at: the user's where given, else the file's; refused where neither is usable."""
        if stated_mpp is not None:
            return checked_scale(stated_mpp, "stated by the user")
        own = self.stated_microns_per_pixel()
        if own is None:
            raise SlideScaleError(f"{self.path.name} does not record its scale (microns per pixel), and the tiles must "
                                  "match the models' field of view. State it (--mpp on the command line, 'State the scale myself' "
                                  "on the page), "
                                  "for example 0.25 for a 40x scan or 0.5 for 20x.")
        return checked_scale(own, "the file's metadata")

    @property
    def objective_power(self) -> float | None:
        value = self._slide.properties.get("openslide.objective-power")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def level_for(self, downsample: float) -> int:
        """The pyramid level with the fewest pixels that still has at least the resolution asked for."""
        return int(self._slide.get_best_level_for_downsample(max(1.0, downsample)))

    def thumbnail(self, side: int = THUMBNAIL_SIDE) -> tuple[np.ndarray, float]:
        """(an RGB thumbnail at most side pixels long, thumbnail pixels per level-0 pixel), read in strips from the
        level nearest the thumbnail's scale, so a slide without a pyramid still never sits whole in memory."""
        width, height = self.dimensions
        scale = min(1.0, side / max(width, height))
        level = self.level_for(1 / scale)
        downsample = self.level_downsamples[level]
        level_width, level_height = self._slide.level_dimensions[level]
        out_width, out_height = max(1, round(width * scale)), max(1, round(height * scale))
        strips = []
        for top in range(0, level_height, STRIP_ROWS):
            rows = min(STRIP_ROWS, level_height - top)
            strip = self._read(level, (0, int(top * downsample)), (level_width, rows))
            strips.append(cv2.resize(strip, (out_width, max(1, round(rows * out_height / level_height))),
                                     interpolation=cv2.INTER_AREA))
        thumb = np.concatenate(strips)
        thumb = cv2.resize(thumb, (out_width, out_height), interpolation=cv2.INTER_AREA) if thumb.shape[0] != out_height else thumb
        return thumb, scale

    def tile(self, x: int, y: int, size: int, out_side: int) -> np.ndarray:
        """The square of size level-0 pixels at (x, y), read from the level nearest out_side pixels for it and
        brought to out_side pixels (area interpolation when shrinking); off the slide is glass."""
        level = self.level_for(size / out_side)
        downsample = self.level_downsamples[level]
        side = max(1, math.ceil(size / downsample))
        region = self._read(level, (x, y), (side, side))
        if region.shape[:2] == (out_side, out_side):
            return region
        interpolation = cv2.INTER_AREA if side > out_side else cv2.INTER_LINEAR
        return np.ascontiguousarray(cv2.resize(region, (out_side, out_side), interpolation=interpolation))

    def _read(self, level: int, location: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """RGB pixels of a level (location in level-0 pixels), transparent parts as glass."""
        openslide = _openslide()
        try:
            rgba = np.asarray(self._slide.read_region(location, level, size))
        except openslide.OpenSlideError as exc:
            raise SlideReadError(f"{self.path.name} could not be read at ({location[0]}, {location[1]}) "
                                 f"({self._without_path(exc)}); the "
                                 "file is damaged or truncated.") from None
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        return (rgba[..., :3] * alpha + GLASS * (1 - alpha)).astype(np.uint8)


def _format_advice(detected: str) -> str:
    if detected == "dicom":
        return ("OpenSlide reads DICOM whole-slide images of the VL Whole Slide Microscopy kind with their full set of "
                "frames; this one it cannot use. Convert the slide to tiled TIFF or SVS (for example with QuPath's or "
                "the scanner software's export) and map that file.")
    return "Export the slide again from the scanner software, or convert it to tiled TIFF or SVS."
