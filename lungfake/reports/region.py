"""A whole region (a microscope photograph or a region exported from a slide): find the tissue, cut it into
tiles of the field of view the models were trained on, score every tissue tile through the one scoring path
(in batches, so a 40-megapixel image never exists as model input at once) and merge the tiles'
probabilities into per-class maps over the image.

Scale. LC25000 does not record its magnification. Its round, compact nuclei (lymphocytes and pneumocytes,
about 7 um across in tissue) span a median 8.5 px of a 224-px benign tile (``scripts/estimate_tile_scale.py``),
so a tile covers roughly 184 um: about 0.82 um per pixel at 224 px, or a 768-px original at 0.24 um/px,
like a 40x-objective photograph. It is an estimate, good to perhaps 25%; the models were trained with
random magnification of 0.6-1.6x, which covers that uncertainty. A region is cut into tiles of that many microns,
given its own microns per pixel.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import Image
from skimage.filters import threshold_otsu

from lungfake.classes import colour_of, display_name, is_cancer
from lungfake.errors import ImageDecodeError
from lungfake.reports.case_report import CaseReport
from lungfake.scoring.scoring import ENSEMBLE, ImageScore, Progress, Scorer
from lungfake.serving.images import REGION, decode_image

log = logging.getLogger(__name__)

LC25000_TILE_MICRONS = 184.0
LC25000_TILE_PIXELS = 224  # the side of the tiles the models were trained from (before their input resize)
SCANNER_MICRONS_AT_1X = 10.0  # the slide-scanner convention: 40x is about 0.25 um per pixel, 20x about 0.5
BATCH_TILES = 64  # two of the scoring path's batches of 32: one traced input shape until the last batch
MASK_SIDE = 1024
# Benign lung is mostly air spaces: on LC25000's benign tiles the raw mask covers under 60% of the tile for
# 55% of them. Closing the mask with a disc a quarter of a tile wide fills the alveoli; then a tile needs
# 30% tissue, which drops 0.3% of benign tiles (tests/test_integration_data.py) and still skips glass.
MIN_TISSUE_FRACTION = 0.3
CLOSING_SHARE_OF_TILE = 0.25
# Saturation of unstained glass stays under ~0.1; Otsu's split is used when lower, so a region that is all
# tissue (no background to split from) is not cut in half at the pale-pink/purple boundary.
MAX_TISSUE_THRESHOLD, MIN_TISSUE_THRESHOLD = 0.15, 0.04
MIN_TILE_PIXELS, MAX_TILES = 32, 20_000
GLASS = 245  # what a tile's part beyond the image's edge is filled with: unstained glass


LC25000_ORIGINAL_PIXELS = 768  # the photographs LC25000's tiles were resized from
STRIP_ASPECT = 2.0  # squashing a 2:1 field to a square cost 1.4-3.6 points (docs/decisions.md)


def region_hint(shape: tuple[int, ...], region_tool: str = "**Map a region**") -> str | None:
    """Why an upload to the tile page may be better mapped as a region, or None. Its decoded pixels are at most
    images.WORKING_SIDE: an image that reaches well past LC25000's 768-px photographs, or a long strip, likely
    shows more than one tile's field, which the models would see squashed into one input."""
    height, width = shape[:2]
    whole = (f"The models score the whole image as one tile, as if it showed one field about {LC25000_TILE_MICRONS:.0f} um "
             f"across. If it shows more tissue than that, {region_tool} cuts it into tiles at a scale you state.")
    if max(height, width) > 1.25 * LC25000_ORIGINAL_PIXELS:
        return f"This image is larger than the {LC25000_ORIGINAL_PIXELS}-pixel photographs LC25000's tiles come from. " + whole
    if max(height, width) >= STRIP_ASPECT * min(height, width):
        ratio = max(height, width) / min(height, width)
        return f"This image is a strip (about {ratio:.1f}:1), squashed to a square for the models. " + whole
    return None


@dataclass(frozen=True)
class RegionScale:
    """How many of the region's pixels make one model tile."""
    microns_per_pixel: float

    @classmethod
    def from_magnification(cls, objective: float) -> RegionScale:
        return cls(SCANNER_MICRONS_AT_1X / objective)

    @classmethod
    def like_lc25000_tiles(cls) -> RegionScale:
        """The region has the pixel scale of LC25000's 224-px tiles (one tile = 224 of its pixels)."""
        return cls(LC25000_TILE_MICRONS / LC25000_TILE_PIXELS)

    @property
    def tile_pixels(self) -> int:
        return int(round(LC25000_TILE_MICRONS / self.microns_per_pixel))


def decode_region(data: bytes, name: str, scale: RegionScale) -> tuple[np.ndarray, RegionScale, float]:
    """The region's pixels at no more resolution than the models use (a tile of at least 224 px; a JPEG is
    decoded at 1/2-1/8 scale where that suffices), the scale of those pixels, and how many of the file's pixels
    each one stands for. A 40-megapixel photograph at 40x becomes about 4 megapixels."""
    shrink = min(1.0, LC25000_TILE_PIXELS / scale.tile_pixels)
    rgb = decode_image(data, name, replace(REGION, shrink=shrink))
    original_side = max(_declared_size(data)) or max(rgb.shape[:2])
    factor = original_side / max(rgb.shape[:2])
    return rgb, RegionScale(scale.microns_per_pixel * factor), factor


def _declared_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return (0, 0)


def tissue_mask(rgb: np.ndarray, tile_pixels: int) -> tuple[np.ndarray, float]:
    """A boolean tissue mask on a thumbnail of at most MASK_SIDE pixels, and the thumbnail's scale
    (thumbnail pixels per region pixel): Otsu's threshold on saturation, capped for all-tissue regions,
    then closed so that air spaces inside lung tissue count as tissue."""
    scale = min(1.0, MASK_SIDE / max(rgb.shape[:2]))
    thumbnail = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    saturation = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0
    saturation = cv2.GaussianBlur(saturation, (5, 5), 0)
    threshold = threshold_otsu(saturation) if np.ptp(saturation) > 0 else MAX_TISSUE_THRESHOLD
    threshold = float(np.clip(threshold, MIN_TISSUE_THRESHOLD, MAX_TISSUE_THRESHOLD))
    side = max(3, int(tile_pixels * scale * CLOSING_SHARE_OF_TILE) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    padded = cv2.copyMakeBorder((saturation > threshold).astype(np.uint8), side, side, side, side, cv2.BORDER_REFLECT)
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disc)[side:-side, side:-side]
    return closed.astype(bool), scale


@dataclass(frozen=True)
class TileGrid:
    """Tile positions (top-left, region pixels) on a grid with half-tile overlap, and each one's tissue share."""
    tile: int
    stride: int
    rows: int
    cols: int
    positions: np.ndarray  # (n, 2) int: y, x of every tissue tile
    cells: np.ndarray  # (n, 2) int: grid row, col of every tissue tile
    tissue: np.ndarray  # (n,) float: share of the tile that is tissue

    @classmethod
    def over(cls, shape: tuple[int, int], tile: int, mask: np.ndarray, mask_scale: float, stride: int | None = None,
             max_tiles: int | None = MAX_TILES) -> TileGrid:
        """Half-tile overlap unless a stride is given (a slide's tiles do not overlap); max_tiles bounds the grid."""
        height, width = shape
        if tile < MIN_TILE_PIXELS:
            raise ImageDecodeError(f"at this scale a tile would be only {tile} pixels; check the microns per pixel "
                                   "or magnification (the image has too few pixels for the models' field of view).")
        if min(height, width) < tile:
            raise ImageDecodeError(f"the image ({width}x{height} pixels) is smaller than one tile at this scale "
                                   f"({tile} pixels); check the scale, or use the single-tile page.")
        stride = stride or max(1, tile // 2)
        # Enough rows and columns to reach the right and bottom edges; the last ones hang over the edge and
        # are filled with glass white (cut_tile), so every pixel of tissue is covered.
        rows, cols = -(-(height - tile) // stride) + 1, -(-(width - tile) // stride) + 1
        if max_tiles is not None and rows * cols > max_tiles:
            raise ImageDecodeError(f"at this scale the image makes {rows * cols:,} tiles (at most {MAX_TILES:,}); "
                                   "check the scale, or export a smaller region.")
        grid_rows, grid_cols = np.mgrid[0:rows, 0:cols]
        cells = np.stack([grid_rows.ravel(), grid_cols.ravel()], axis=1)
        shares = tissue_shares(mask, mask_scale, cells[:, 0] * stride, cells[:, 1] * stride, tile)
        keep = shares >= MIN_TISSUE_FRACTION
        return cls(tile, stride, rows, cols, cells[keep] * stride, cells[keep], shares[keep])

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def cells_per_tile(self) -> int:
        """How many grid cells one tile spans per side (2 with half-tile overlap, 1 without)."""
        return max(1, -(-self.tile // self.stride))


def tissue_shares(mask: np.ndarray, scale: float, ys: np.ndarray, xs: np.ndarray, tile: int) -> np.ndarray:
    """Share of each whole tile (top-left ys, xs in image pixels; a part over the image's edge counts as glass) that
    is tissue, from a summed-area table of the mask: one pass however many tiles (a slide has hundreds of thousands)."""
    table = np.pad(np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0)))
    top, left = (np.asarray(ys) * scale).astype(np.int64), (np.asarray(xs) * scale).astype(np.int64)
    height = np.maximum(1, ((np.asarray(ys) + tile) * scale).astype(np.int64) - top)
    width = np.maximum(1, ((np.asarray(xs) + tile) * scale).astype(np.int64) - left)
    bottom, right = np.minimum(top + height, mask.shape[0]), np.minimum(left + width, mask.shape[1])
    top, left = np.minimum(top, mask.shape[0]), np.minimum(left, mask.shape[1])
    inside = table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]
    return inside / (height * width)


def cut_tile(rgb: np.ndarray, y: int, x: int, tile: int) -> np.ndarray:
    """One tile at the side the models were trained from (their own input resize follows in scoring)."""
    crop = rgb[y : y + tile, x : x + tile]
    if crop.shape[:2] != (tile, tile):  # over the right or bottom edge: the rest is glass
        crop = cv2.copyMakeBorder(crop, 0, tile - crop.shape[0], 0, tile - crop.shape[1], cv2.BORDER_CONSTANT,
                                  value=(GLASS,) * 3)
    interpolation = cv2.INTER_AREA if tile > LC25000_TILE_PIXELS else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (LC25000_TILE_PIXELS, LC25000_TILE_PIXELS), interpolation=interpolation))


@dataclass
class RegionResult:
    """Every tissue tile's calibrated probabilities per model (and the ensemble) and screening verdicts."""
    shape: tuple[int, int]
    grid: TileGrid
    class_names: tuple[str, ...]
    model_names: dict[str, str]  # arch -> display name, ensemble included when there are several models
    probabilities: dict[str, np.ndarray]  # arch -> (n tiles, classes)
    ood: np.ndarray  # (n,) bool: the tile is not lung H&E
    ood_reasons: Counter = field(default_factory=Counter)
    domain_shift: np.ndarray | None = None  # (n,) bool: H&E, but unlike LC25000's tiles
    seconds: float = 0.0
    pixel_factor: float = 1.0  # pixels of the uploaded file per pixel scored (decode_region)
    subtype_uncertain: np.ndarray | None = None  # (n,) bool: a carcinoma tile whose subtype the verdict withholds
    verdicts: list[str] | None = None  # (n,) each tile's verdict, as the tile page words it

    def in_file_pixels(self, value: float) -> int:
        return int(round(value * self.pixel_factor))

    def tile_name(self, i: int) -> str:
        y, x = self.grid.positions[i]
        return f"tile at x={self.in_file_pixels(x)}, y={self.in_file_pixels(y)}"

    def cancer_probability(self, which: str = ENSEMBLE) -> np.ndarray:
        cancer = [i for i, name in enumerate(self.class_names) if is_cancer(name)]
        return self.probabilities[self._key(which)][:, cancer].sum(axis=1)

    def _key(self, which: str) -> str:
        return which if which in self.probabilities else next(iter(self.probabilities))

    def probability_map(self, which: str = ENSEMBLE) -> np.ndarray:
        """(grid rows + 1, grid cols + 1, classes) mean probability over the tiles covering each half-tile
        cell; NaN where no tissue tile covers it."""
        grid, values = self.grid, self.probabilities[self._key(which)]
        span = grid.cells_per_tile
        total = np.zeros((grid.rows + span - 1, grid.cols + span - 1, len(self.class_names)), np.float64)
        count = np.zeros(total.shape[:2], np.float64)
        for (row, col), p in zip(grid.cells, values):
            total[row : row + span, col : col + span] += p
            count[row : row + span, col : col + span] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count[..., None]

    def tissue_share_by_class(self, which: str = ENSEMBLE) -> dict[str, float]:
        """Share of the scored tissue area (half-tile cells) that each class wins."""
        merged = self.probability_map(which)
        covered = ~np.isnan(merged[..., 0])
        if not covered.any():
            return {name: 0.0 for name in self.class_names}
        winners = np.argmax(np.nan_to_num(merged[covered], nan=-1.0), axis=1)
        return {name: float(np.mean(winners == i)) for i, name in enumerate(self.class_names)}

    def most_suspicious(self, k: int = 6) -> list[int]:
        """Tile indices, highest ensemble cancer probability first, tiles flagged as not H&E left out."""
        order = np.argsort(-self.cancer_probability())
        return [int(i) for i in order if not self.ood[i]][:k]

    @property
    def ood_share(self) -> float:
        return float(self.ood.mean()) if len(self.ood) else 0.0

    @property
    def domain_shift_share(self) -> float:
        shifted = self.domain_shift if self.domain_shift is not None else np.zeros(0, bool)
        return float(shifted.mean()) if len(shifted) else 0.0

    def map_image(self, rgb_thumbnail: np.ndarray, which: str = ENSEMBLE, opacity: float = 0.5) -> np.ndarray:
        """The region (thumbnail) with each covered cell tinted by its classes' colours, weighted by probability."""
        merged = self.probability_map(which)
        palette = np.array([_hex_rgb(colour_of(name)) for name in self.class_names], np.float32)
        tint = np.nan_to_num(merged) @ palette  # (rows+1, cols+1, 3)
        covered = (~np.isnan(merged[..., 0])).astype(np.float32)
        cell, span = self.grid.stride, self.grid.cells_per_tile
        height, width = self.shape
        full_h, full_w = (self.grid.rows + span - 1) * cell, (self.grid.cols + span - 1) * cell
        th, tw = rgb_thumbnail.shape[:2]
        sy, sx = th / height, tw / width
        size = (max(1, int(round(full_w * sx))), max(1, int(round(full_h * sy))))
        tint_up = cv2.resize(tint, size, interpolation=cv2.INTER_NEAREST)[:th, :tw]
        alpha = cv2.resize(covered, size, interpolation=cv2.INTER_NEAREST)[:th, :tw, None] * opacity
        out = rgb_thumbnail.astype(np.float32).copy()
        region = out[: tint_up.shape[0], : tint_up.shape[1]]
        region[:] = (1 - alpha) * region + alpha * tint_up
        return np.clip(out, 0, 255).astype(np.uint8)

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["x", "y", "tile_pixels", "tissue_fraction", "ood", "domain_shift", "verdict",
                         *[f"{arch}_{column}" for arch in self.probabilities for column in
                           ("predicted", *[f"p_{c}" for c in self.class_names])]])
        for i, (y, x) in enumerate(self.grid.positions):
            cells = []
            for values in self.probabilities.values():
                cells += [self.class_names[int(np.argmax(values[i]))], *[f"{p:.6f}" for p in values[i]]]
            shifted = self.domain_shift is not None and bool(self.domain_shift[i])
            writer.writerow([self.in_file_pixels(x), self.in_file_pixels(y), self.in_file_pixels(self.grid.tile),
                             f"{self.grid.tissue[i]:.3f}", bool(self.ood[i]), shifted,
                             self.verdicts[i] if self.verdicts else "", *cells])
        return out.getvalue()

    def summary(self) -> str:
        shares = self.tissue_share_by_class()
        parts = ", ".join(f"{display_name(name)} {share:.0%}" for name, share in shares.items())
        uncertain = int(self.subtype_uncertain.sum()) if self.subtype_uncertain is not None else 0
        return (f"{len(self.grid)} tissue tiles of {self.in_file_pixels(self.grid.tile)} px scored in {self.seconds:.1f} s; "
                f"tissue area: {parts}; carcinoma tiles with the subtype uncertain: {uncertain}")


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def thumbnail(rgb: np.ndarray, side: int = MASK_SIDE) -> np.ndarray:
    scale = min(1.0, side / max(rgb.shape[:2]))
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb.copy()


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def score_region(scorer: Scorer, rgb: np.ndarray, scale: RegionScale,
                 on_progress: Callable[[Progress], None] | None = None, pixel_factor: float = 1.0) -> RegionResult:
    """Tile the region's tissue at the scale, score every tile with every served model, batch by batch.
    on_progress is called after each batch (the app's progress bar; raising from it cancels the run);
    pixel_factor (from decode_region) turns positions back into the uploaded file's pixels."""
    started = time.perf_counter()
    mask, mask_scale = tissue_mask(rgb, scale.tile_pixels)
    grid = TileGrid.over(rgb.shape[:2], scale.tile_pixels, mask, mask_scale)
    if not len(grid):
        raise ImageDecodeError("no tissue was found in the image (it looks like background or glass); "
                               "upload an H&E-stained region.")
    log.info("region %dx%d: %d tissue tiles of %d px", rgb.shape[1], rgb.shape[0], len(grid), grid.tile)
    return score_grid(scorer, grid, lambda y, x: cut_tile(rgb, y, x, grid.tile), rgb.shape[:2], on_progress, started,
                      pixel_factor)


def score_grid(scorer: Scorer, grid: TileGrid, read_tile: Callable[[int, int], np.ndarray], shape: tuple[int, int],
               on_progress: Callable[[Progress], None] | None = None, started: float | None = None,
               pixel_factor: float = 1.0) -> RegionResult:
    """Every tile of the grid, read by read_tile(y, x) at LC25000's tile side, through the one scoring path in
    batches of BATCH_TILES (only one batch of pixels exists at a time); on_progress after each batch."""
    started = time.perf_counter() if started is None else started
    collected: dict[str, list[np.ndarray]] = {}
    ood, shifted, reasons = np.zeros(len(grid), bool), np.zeros(len(grid), bool), Counter()
    uncertain, verdicts = np.zeros(len(grid), bool), []
    for start in range(0, len(grid), BATCH_TILES):
        tiles = [read_tile(int(y), int(x)) for y, x in grid.positions[start : start + BATCH_TILES]]
        for offset, score in enumerate(scorer.score(tiles, [f"tile {start + i}" for i in range(len(tiles))])):
            _collect(score, collected)
            ood[start + offset], shifted[start + offset] = bool(score.ood.ood), bool(score.ood.domain_shift)
            uncertain[start + offset] = score.verdict.subtype_uncertain
            verdicts.append(score.verdict.headline)
            if score.ood.ood:
                reasons[score.ood.reason.split(" (")[0]] += 1
        if on_progress:
            on_progress(Progress(min(start + BATCH_TILES, len(grid)), len(grid), time.perf_counter() - started))
    first = scorer.served[0].entry
    names = {s.entry.arch: s.name for s in scorer.served} | ({ENSEMBLE: "Ensemble"} if len(scorer.served) > 1 else {})
    return RegionResult(shape, grid, tuple(first.class_names), names,
                        {arch: np.asarray(rows) for arch, rows in collected.items()}, ood, reasons, shifted,
                        time.perf_counter() - started, pixel_factor, uncertain, verdicts)


def _collect(score: ImageScore, collected: dict[str, list[np.ndarray]]) -> None:
    ensemble = score.ensemble
    for arch, model_score in {**score.models, **({ENSEMBLE: ensemble} if ensemble else {})}.items():
        collected.setdefault(arch, []).append(np.array(list(model_score.probabilities.values())))


def explain_tiles(scorer: Scorer, rgb: np.ndarray, result: RegionResult, indices: list[int]) -> list[ImageScore]:
    """Every model's score and Grad-CAM for chosen tiles of a scored region."""
    tiles = [cut_tile(rgb, *result.grid.positions[i], result.grid.tile) for i in indices]
    return scorer.score(tiles, [result.tile_name(i) for i in indices], explain=True) if tiles else []


def region_report(result: RegionResult, map_rgb: np.ndarray, map_of: str, suspicious: list[ImageScore], source: str,
                  models: list) -> CaseReport:
    """The case report of a scored region: its class map, summary, warnings and the suspicious tiles' Grad-CAM."""
    report = CaseReport("Region report", source, models)
    report.add_images([(map_rgb, f"{result.model_names.get(map_of, map_of)} class map")], width=640)
    report.add_text(result.summary())
    if result.ood.any():
        report.add_warning(f"{result.ood_share:.0%} of the tissue tiles do not look like lung H&E tiles; the map means "
                           "little there.")
    if result.domain_shift_share:
        report.add_warning(f"{result.domain_shift_share:.0%} of the tissue tiles are H&E but unlike LC25000's; trust "
                           "the map less there.")
    for score in suspicious:
        report.add_score(score)
    return report
