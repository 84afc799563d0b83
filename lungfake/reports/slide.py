"""A whole slide mapped tile by tile: the tissue found on a thumbnail, tiles of LC25000's field of view read from the
pyramid level nearest the models' scale and streamed in batches through the one scoring path (the same verdict,
screen, scale setting and calibration as a single tile), and what a pathologist takes away: a class map, a summary,
the most suspicious tiles with their overlays, a CSV of every tile, an HTML report and a QuPath GeoJSON of tiles.

Memory does not grow with the slide: the thumbnail is at most THUMBNAIL_SIDE pixels, one batch of tiles exists at a
time, and what is kept per tile is a few numbers.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

from lungfake.classes import CLASS_NAMES, colour_of, display_name, is_cancer
from lungfake.errors import SlideReadError, SlideTooLongError
from lungfake.reports.case_report import CaseReport, reproducible
from lungfake.reports.region import (
    CLOSING_SHARE_OF_TILE,
    LC25000_TILE_MICRONS,
    LC25000_TILE_PIXELS,
    MAX_TISSUE_THRESHOLD,
    MIN_TISSUE_THRESHOLD,
    RegionResult,
    TileGrid,
    _hex_rgb,
    png_bytes,
    score_grid,
)
from lungfake.scoring.scoring import ENSEMBLE, ImageScore, Progress, Scorer
from lungfake.serving.slides import THUMBNAIL_SIDE, SlideFile, SlideScale
from lungfake.serving.verdict import BENIGN, CANCER, REFUSED

log = logging.getLogger(__name__)

MEDIAN_FILTER = 5  # thumbnail pixels: speckle in the saturation channel (dust, noise) is smoothed before Otsu
SPECK_SHARE_OF_TILE = 0.25  # a tissue piece smaller than a quarter of a tile is a speck, not tissue to score
# The region command's rate here (three models, no overlays; README "Map a region"): the estimate's basis
TILES_PER_SECOND_ESTIMATE = 18.0
DEFAULT_MINUTES_LIMIT = 30.0  # the page refuses a slide whose estimate is longer; the command line warns and goes on
SUSPICIOUS_TILES = 4
OUTPUT_KINDS = ("map", "csv", "geojson", "report")
MASK_PIXELS_PER_TILE = 8
MAX_THUMBNAIL_SIDE = 6144  # 113 MB of RGB at most; a 100,000-px slide at 224 px a tile needs 3,571
UNCERTAIN_COLOUR, REFUSED_COLOUR = "#b8860b", "#9e9e9e"
# The slide's subtype is named only when most carcinoma tiles were given one and this share of those agree
SUBTYPE_AGREEMENT = 2 / 3


def verdict_colours() -> dict[str, str]:
    """Every tile verdict's colour on maps and in QuPath: the classes' own, then subtype uncertain and not scored."""
    colours = {display_name(name): colour_of(name) for name in CLASS_NAMES if is_cancer(name)}
    return {BENIGN: colour_of(next(n for n in CLASS_NAMES if not is_cancer(n))), **colours,
            f"{CANCER}, subtype uncertain": UNCERTAIN_COLOUR, REFUSED: REFUSED_COLOUR}


def tissue_mask(thumbnail: np.ndarray, tile_thumbnail_pixels: float) -> np.ndarray:
    """Tissue on a thumbnail: HSV saturation, a median filter and Otsu's threshold (bounded, so an all-tissue slide
    is not cut in half), closed so that alveolar spaces count as tissue, specks smaller than a quarter tile dropped."""
    saturation = cv2.medianBlur(cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)[..., 1], MEDIAN_FILTER).astype(np.float32) / 255
    threshold = threshold_otsu(saturation) if np.ptp(saturation) > 0 else MAX_TISSUE_THRESHOLD
    mask = saturation > float(np.clip(threshold, MIN_TISSUE_THRESHOLD, MAX_TISSUE_THRESHOLD))
    side = max(3, int(tile_thumbnail_pixels * CLOSING_SHARE_OF_TILE) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), side, side, side, side, cv2.BORDER_CONSTANT, value=0)
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disc)[side:-side, side:-side].astype(bool)
    return remove_small_objects(closed, max_size=max(1, int(SPECK_SHARE_OF_TILE * tile_thumbnail_pixels**2)))


@dataclass
class SlidePlan:
    """What mapping a slide will do, before any tile is scored: its scale, tile size, tissue and estimated time."""
    name: str
    dimensions: tuple[int, int]  # level 0 (width, height)
    scale: SlideScale
    tile: int  # level-0 pixels per tile side
    level: int  # the pyramid level tiles are read from
    grid: TileGrid
    thumbnail: np.ndarray
    thumbnail_scale: float  # thumbnail pixels per level-0 pixel
    mask: np.ndarray

    @property
    def tissue_mm2(self) -> float:
        microns_per_thumbnail_pixel = self.scale.microns_per_pixel / self.thumbnail_scale
        return float(self.mask.sum()) * microns_per_thumbnail_pixel**2 / 1e6

    @property
    def estimated_seconds(self) -> float:
        return len(self.grid) / TILES_PER_SECOND_ESTIMATE

    def too_long_message(self, minutes_limit: float) -> str | None:
        """Why the slide would take too long, or None: the estimate against the limit."""
        if self.estimated_seconds <= minutes_limit * 60:
            return None
        return (f"{self.name} has {len(self.grid):,} tissue tiles: about {self.estimated_seconds / 60:.0f} minutes at "
                f"{TILES_PER_SECOND_ESTIMATE:.0f} tiles per second here, over the {minutes_limit:.0f}-minute limit. Map it "
                "with the command line (python -m lungfake slide), which goes on past the limit, or export a region.")

    def mask_image(self) -> np.ndarray:
        """The thumbnail with what counts as tissue outlined, for the user to check."""
        out = self.thumbnail.copy()
        contours, _ = cv2.findContours(self.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (0, 160, 0), max(1, round(max(out.shape[:2]) / 500)))
        return out


def mask_side(dimensions: tuple[int, int], tile: int) -> int:
    """The thumbnail's longer side: MASK_PIXELS_PER_TILE a tile, so a tile's tissue share is measured, not guessed from
    three pixels, within THUMBNAIL_SIDE to MAX_THUMBNAIL_SIDE."""
    return int(np.clip(max(dimensions) / tile * MASK_PIXELS_PER_TILE, THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE))


def plan_slide(slide: SlideFile, stated_mpp: float | None = None) -> SlidePlan:
    """The slide's scale (its own, or the one stated), its tissue and the tiles that cover it (no overlap)."""
    scale = slide.scale(stated_mpp)
    tile = int(round(LC25000_TILE_MICRONS / scale.microns_per_pixel))
    thumbnail, thumbnail_scale = slide.thumbnail(mask_side(slide.dimensions, tile))
    mask = tissue_mask(thumbnail, tile * thumbnail_scale)
    width, height = slide.dimensions
    if min(width, height) < tile:
        raise SlideReadError(f"{slide.path.name} ({width}x{height} pixels) is smaller than one tile at "
                             f"{scale.microns_per_pixel:g} um per pixel ({tile} pixels); check the scale.")
    grid = TileGrid.over((height, width), tile, mask, thumbnail_scale, stride=tile, max_tiles=None)
    if not len(grid):
        raise SlideReadError(f"No tissue was found on {slide.path.name} (it looks like glass or background at "
                             f"{scale.microns_per_pixel:g} um per pixel). Check that it is an H&E slide.")
    return SlidePlan(slide.path.name, (width, height), scale, tile, slide.level_for(tile / LC25000_TILE_PIXELS), grid,
                     thumbnail, thumbnail_scale, mask)


@dataclass
class SlideResult:
    """A mapped slide: every tissue tile's scores (a RegionResult in level-0 pixels) and its suspicious tiles."""
    plan: SlidePlan
    tiles: RegionResult
    suspicious: list[ImageScore] = field(default_factory=list)

    def verdict_counts(self) -> Counter:
        return Counter(self.tiles.verdicts or [])

    def slide_subtype(self) -> str | None:
        """The subtype the slide's carcinoma tiles agree on, or None (mixed, or withheld on most of them): named only
        when at least half the carcinoma tiles were given a subtype and SUBTYPE_AGREEMENT of those agree."""
        counts = self.verdict_counts()
        given = {display_name(n): counts[display_name(n)] for n in CLASS_NAMES if is_cancer(n)}
        total, withheld = sum(given.values()), counts[f"{CANCER}, subtype uncertain"]
        leader = max(given, key=given.get)
        return leader if total and total >= withheld and given[leader] >= SUBTYPE_AGREEMENT * total else None

    def summary(self) -> dict:
        counts, scored = self.verdict_counts(), len(self.tiles.grid)
        carcinoma = sum(c for name, c in counts.items() if name not in (BENIGN, REFUSED))
        return {"slide": self.plan.name, "microns_per_pixel": self.plan.scale.microns_per_pixel,
                "scale_from": self.plan.scale.source, "tile_pixels": self.plan.tile, "level": self.plan.level,
                "tissue_mm2": round(self.plan.tissue_mm2, 2), "tissue_tiles": scored,
                "tiles_by_verdict": dict(sorted(counts.items())), "cancer_found": carcinoma > 0,
                "carcinoma_tiles": carcinoma, "subtype": self.slide_subtype(),
                "subtype_withheld_tiles": counts.get(f"{CANCER}, subtype uncertain", 0),
                "refused_tiles": counts.get(REFUSED, 0), "seconds": round(self.tiles.seconds, 1)}

    def summary_text(self) -> str:
        s = self.summary()
        verdicts = ", ".join(f"{name} {count}" for name, count in s["tiles_by_verdict"].items())
        found = (f"carcinoma called on {s['carcinoma_tiles']} tiles" if s["cancer_found"] else "no carcinoma called")
        subtype = (f"; the tiles given a subtype agree on {s['subtype']}" if s["subtype"]
                   else "; no subtype is named for the slide (mixed, or withheld)" if s["cancer_found"] else "")
        took = "" if reproducible() else f" in {s['seconds']:.0f} s"  # a time would make two runs' reports differ
        return (f"{s['tissue_tiles']} tissue tiles ({s['tissue_mm2']:.1f} mm2 of tissue, tiles of {s['tile_pixels']} px at "
                f"{s['microns_per_pixel']:g} um/px from {s['scale_from']}) scored{took}: {found}{subtype}. "
                f"Tiles: {verdicts}. Subtype withheld on {s['subtype_withheld_tiles']} tiles; "
                f"{s['refused_tiles']} tiles refused as not lung H&E.")

    def map_image(self, which: str = ENSEMBLE, opacity: float = 0.5) -> np.ndarray:
        return self.tiles.map_image(self.plan.thumbnail, which, opacity)

    def verdict_map_image(self, opacity: float = 0.55) -> np.ndarray:
        """The thumbnail with each tissue tile filled in its verdict's colour."""
        colours = {name: np.array(_hex_rgb(c), np.float32) for name, c in verdict_colours().items()}
        out = self.plan.thumbnail.astype(np.float32)
        scale, tile = self.plan.thumbnail_scale, self.plan.tile
        for (y, x), verdict in zip(self.tiles.grid.positions, self.tiles.verdicts or []):
            top, left = int(y * scale), int(x * scale)
            bottom, right = max(top + 1, int((y + tile) * scale)), max(left + 1, int((x + tile) * scale))
            out[top:bottom, left:right] = (1 - opacity) * out[top:bottom, left:right] + opacity * colours[verdict]
        return np.clip(out, 0, 255).astype(np.uint8)

    def csv_text(self) -> str:
        return self.tiles.csv_text()

    def geojson(self) -> dict:
        """QuPath 0.4+ tiles: a FeatureCollection of level-0 squares, each classified by its verdict (with the colour
        QuPath requires) and measured by every model's calibrated class probabilities. Ids are UUIDs derived from the
        slide's name and the tile's place, so the same slide gives the same file."""
        colours = {name: list(_hex_rgb(c)) for name, c in verdict_colours().items()}
        names, features = self.tiles.model_names, []
        for i, (y, x) in enumerate(self.tiles.grid.positions):
            x, y, side = int(x), int(y), int(self.plan.tile)
            verdict = self.tiles.verdicts[i]
            measurements = {f"{names[arch]}: {display_name(c)}": round(float(self.tiles.probabilities[arch][i][k]), 6)
                            for arch in self.tiles.probabilities for k, c in enumerate(self.tiles.class_names)}
            measurements["Tissue fraction"] = round(float(self.tiles.grid.tissue[i]), 4)
            features.append({
                "type": "Feature",
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"lungfake:{self.plan.name}:{x}:{y}:{side}")),
                "geometry": {"type": "Polygon",
                             "coordinates": [[[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]]},
                "properties": {"objectType": "tile", "classification": {"name": verdict, "color": colours[verdict]},
                               "measurements": measurements, "isLocked": False},
            })
        return {"type": "FeatureCollection", "features": features}

    def geojson_text(self) -> str:
        return json.dumps(self.geojson(), separators=(",", ":")) + "\n"

    def outputs(self, models: list, kinds=OUTPUT_KINDS) -> dict[str, bytes]:
        """The chosen outputs' bytes, by kind (map, csv, geojson, report): the command line and a cohort write these."""
        makers = {"map": lambda: png_bytes(self.verdict_map_image()), "csv": lambda: self.csv_text().encode(),
                  "geojson": lambda: self.geojson_text().encode(), "report": lambda: self.report(models).html().encode()}
        return {kind: makers[kind]() for kind in kinds}

    def report(self, models: list) -> CaseReport:
        report = CaseReport("Slide report", self.plan.name, models)
        report.add_images([(self.verdict_map_image(), "Each tissue tile in its verdict's colour"),
                           (self.plan.mask_image(), "Tissue found (outlined)")], width=480)
        report.add_text(self.summary_text())
        if self.tiles.ood.any():
            report.add_warning(f"{self.tiles.ood_share:.0%} of the tissue tiles do not look like lung H&E tiles and were "
                               "not scored.")
        if self.tiles.domain_shift_share:
            report.add_warning(f"{self.tiles.domain_shift_share:.0%} of the tissue tiles are H&E but unlike LC25000's; "
                               "trust the map less there.")
        for score in self.suspicious:
            report.add_score(score)
        return report


def map_slide(scorer: Scorer, slide: SlideFile, plan: SlidePlan, on_progress: Callable[[Progress], None] | None = None,
              suspicious: int = SUSPICIOUS_TILES) -> SlideResult:
    """Score every tissue tile of the plan, batch by batch (on_progress after each; raising from it stops the run),
    then explain the most suspicious tiles with every model's overlay."""
    started = time.perf_counter()
    log.info("slide %s: %d tissue tiles of %d px from level %d", plan.name, len(plan.grid), plan.tile, plan.level)
    read = lambda y, x: slide.tile(x, y, plan.tile, LC25000_TILE_PIXELS)
    tiles = score_grid(scorer, plan.grid, read, (plan.dimensions[1], plan.dimensions[0]), on_progress, started)
    chosen = tiles.most_suspicious(suspicious)
    explained = scorer.score([read(*plan.grid.positions[i]) for i in chosen], [tiles.tile_name(i) for i in chosen],
                             explain=True) if chosen else []
    return SlideResult(plan, tiles, explained)


def too_long(plan: SlidePlan, minutes_limit: float) -> None:
    """Refuse a slide whose estimate is over the limit (the page's rule)."""
    message = plan.too_long_message(minutes_limit)
    if message:
        raise SlideTooLongError(message)


def map_figure(result: SlideResult):
    """A zoomable plotly figure of the verdict map over the thumbnail, with the verdicts' colours as its legend."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Image(z=result.verdict_map_image(), hoverinfo="skip"))
    for name, colour in verdict_colours().items():  # legend entries only: the colours are painted in the image
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                    marker={"size": 12, "color": colour, "symbol": "square"}))
    figure.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=640, dragmode="zoom",
                         legend={"orientation": "h", "y": -0.02}, xaxis={"visible": False},
                         yaxis={"visible": False, "scaleanchor": "x"})
    return figure


SLIDES_DIR_SETTING = "LUNGFAKE_SLIDES_DIR"
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".dcm", ".tif", ".tiff", ".vms", ".vmu", ".bif", ".svslide")


def server_slides() -> list[Path]:
    """The slide files in the server's slide folder (the LUNGFAKE_SLIDES_DIR setting), or none where it is unset."""
    folder = os.environ.get(SLIDES_DIR_SETTING)
    if not folder or not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)


def write_all(files: dict[Path, bytes]) -> None:
    """Every output or none: each is written beside its place and moved there once all are written."""
    staged = []
    try:
        for path, data in files.items():
            temporary = path.with_name(f".{path.name}.partial")
            temporary.write_bytes(data)
            staged.append((temporary, path))
    except OSError:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in staged:
        temporary.replace(path)
