"""Scale normalisation: each tile brought part of the way to LC25000's magnification before it is scored.

Other labs photograph tissue at other magnifications, and a magnification shift is the largest one measured here
(the robustness table's 0.6x and 1.6x rows). The nuclei give a tile's scale: their median size is estimated from the
haematoxylin channel (colour deconvolution, Otsu threshold, connected components) and compared with the median over
LC25000 training tiles (the reference, fitted by ``python -m lungfake scale-fit``). The tile is then magnified by
(reference / size) ** power, clipped. Power 0.5 (half-way in log scale) and shrinking only were chosen on validation
tiles only (``benchmarks/scale_normalisation.py``, docs/decisions.md).

The models and the out-of-distribution screen see the normalised view; overlays are mapped back onto the uploaded
tile (ScaledView.to_tile_frame). Where a setting that enlarges shows the models only the tile's centre, the rim they
did not see has no overlay (NaN).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu

from lungfake.serving.images import to_model_input

REFERENCE_SIDE = 224  # LC25000's tile side: nuclear sizes are measured, and views made, on the tile at this side
MIN_BLOB_PIXELS = 9  # smaller haematoxylin specks are noise, not nuclei
DEFAULT_POWER = 0.5  # chosen on validation tiles (module docstring)
# Shrink only, never enlarge: on validation tiles drawn as other labs might show them, enlarging cost every model
# cancer-vs-benign accuracy (0.3-0.6 points) for no gain in three classes that shrinking alone does not give
# (docs/decisions.md, "Scale normalisation"). 0.6x: the robustness table's shift, no correction beyond what was measured.
DEFAULT_FACTOR_RANGE = (0.6, 1.0)
log = logging.getLogger(__name__)


def nuclear_size(rgb: np.ndarray) -> float:
    """The median side (square root of the area, in pixels) of the tile's haematoxylin blobs, or nan without any."""
    haematoxylin = cv2.GaussianBlur(rgb2hed(rgb)[..., 0].astype(np.float32), (0, 0), 1.0)
    if float(haematoxylin.max() - haematoxylin.min()) < 1e-6:  # a flat tile: no threshold, no nuclei
        return float("nan")
    mask = (haematoxylin > threshold_otsu(haematoxylin)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    areas = cv2.connectedComponentsWithStats(mask, connectivity=8)[2][1:, cv2.CC_STAT_AREA]
    areas = areas[areas >= MIN_BLOB_PIXELS]
    return float(np.sqrt(np.median(areas))) if len(areas) else float("nan")


def at_reference_side(rgb: np.ndarray) -> np.ndarray:
    """The image as the models' resize shows it, at LC25000's tile side (uint8)."""
    return to_model_input(rgb, REFERENCE_SIDE).round().astype(np.uint8)


def magnified(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The same field at another magnification, at the tile's size. Above 1: the centre, enlarged.
    Below 1: the tile shrunk, the field around it continued by mirroring (LC25000 has no wider field)."""
    size = rgb.shape[0]
    if factor >= 1:
        side = int(round(size / factor))
        start = (size - side) // 2
        return cv2.resize(rgb[start : start + side, start : start + side], (size, size), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(rgb, (int(round(size * factor)),) * 2, interpolation=cv2.INTER_AREA)
    pad = size - small.shape[0]
    return cv2.copyMakeBorder(small, pad // 2, pad - pad // 2, pad // 2, pad - pad // 2, cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class ScaledView:
    """What the models score of one uploaded image: the image at REFERENCE_SIDE, magnified by factor."""

    pixels: np.ndarray  # REFERENCE_SIDE x REFERENCE_SIDE x 3, uint8 (factor 1: the image as it came)
    factor: float  # 1.0: unchanged; above 1 the centre enlarged; below 1 shrunk, the field continued by mirroring
    nuclear_size: float  # px at REFERENCE_SIDE (nan: none found, factor 1)

    def to_tile_frame(self, heatmap: np.ndarray) -> np.ndarray:
        """A map over the view (any square size) as a map over the whole image (REFERENCE_SIDE square; the caller's
        overlay stretches it to the image): NaN where the view did not show the image."""
        side = REFERENCE_SIDE
        if self.factor == 1.0:  # the view is the whole image
            return heatmap
        view = cv2.resize(heatmap.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
        if self.factor > 1.0:  # the view is the centre of the image (magnified's crop), enlarged
            seen = int(round(side / self.factor))
            start = (side - seen) // 2
            frame = np.full((side, side), np.nan, np.float32)
            frame[start : start + seen, start : start + seen] = cv2.resize(view, (seen, seen), interpolation=cv2.INTER_AREA)
            return frame
        shrunk = int(round(side * self.factor))  # the image, shrunk, sits at the view's centre (magnified's padding)
        start = (side - shrunk) // 2
        return cv2.resize(view[start : start + shrunk, start : start + shrunk], (side, side), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class ScaleNormalisation:
    """The registry's scale setting: LC25000's median nuclear size and how far each tile is brought to it."""

    reference_nuclear_size: float  # px at REFERENCE_SIDE, median over grouped training tiles
    power: float = DEFAULT_POWER
    min_factor: float = DEFAULT_FACTOR_RANGE[0]
    max_factor: float = DEFAULT_FACTOR_RANGE[1]

    def factor_for(self, size: float) -> float:
        if not np.isfinite(size) or size <= 0 or self.power == 0:
            return 1.0
        # to 1%: finer steps are below the estimate's noise, and a tile within 0.5% of the reference is left as it is
        return round(float(np.clip((self.reference_nuclear_size / size) ** self.power, self.min_factor, self.max_factor)), 2)

    def view(self, rgb: np.ndarray) -> ScaledView:
        tile = at_reference_side(rgb)
        size = nuclear_size(tile)
        factor = self.factor_for(size)
        # left as it is, the image itself: each model resizes it once, not once to 224 px and again to its own size
        return ScaledView(magnified(tile, factor) if factor != 1.0 else rgb, factor, size)

    def views(self, tiles) -> list[ScaledView]:
        return [self.view(t) for t in tiles]

    def to_json(self) -> dict:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, payload: dict | None) -> ScaleNormalisation | None:
        return cls(**{k: float(v) for k, v in payload.items()}) if payload else None


def as_scored(images, scale: ScaleNormalisation | None):
    """The pixels the scorer's models and screen see of each image (the images themselves without a setting)."""
    return [view.pixels for view in scale.views(images)] if scale is not None else images


def unscaled_view(rgb: np.ndarray) -> ScaledView:
    """The image as it is (a registry without a scale setting): the models resize it themselves."""
    return ScaledView(rgb, 1.0, float("nan"))


