"""Pyramidal slide files built from tiles with a known layout, so that every tile's truth is known when the slide
is mapped (tests and benchmarks; LC25000's grouped test tiles make the mosaic). Written with tifffile as Aperio SVS:
tiled levels in the main IFD chain and the scale in the description, which OpenSlide reads as openslide.mpp-x/-y."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

TIFF_TILE = 256
GLASS = 245


@dataclass(frozen=True)
class Mosaic:
    path: Path
    positions: list[tuple[int, int]]  # level-0 (x, y) of each tile, in the order given
    tile: int  # level-0 pixels per tile side


def write_mosaic(path: str | Path, tiles: list[np.ndarray], columns: int, microns_per_pixel: float,
                 margin: int | None = None, levels: int = 3) -> Mosaic:
    """Tiles (equal squares) laid row by row on glass, with a margin of one tile all round; levels halve each time.
    Lossless, so a tile read back at level 0 is the tile given, pixel for pixel."""
    side = tiles[0].shape[0]
    margin = side if margin is None else margin
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * side + 2 * margin, columns * side + 2 * margin, 3), GLASS, np.uint8)
    positions = []
    for i, tile in enumerate(tiles):
        x, y = margin + (i % columns) * side, margin + (i // columns) * side
        canvas[y : y + side, x : x + side] = tile
        positions.append((x, y))
    _write_svs(Path(path), [_halved(canvas, k) for k in range(levels)], microns_per_pixel)
    return Mosaic(Path(path), positions, side)


def _halved(image: np.ndarray, times: int) -> np.ndarray:
    for _ in range(times):
        image = cv2.resize(image, (max(1, image.shape[1] // 2), max(1, image.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    return image


def _write_svs(path: Path, levels: list[np.ndarray], microns_per_pixel: float) -> None:
    height, width = levels[0].shape[:2]
    description = (f"Aperio Image Library lungfake mosaic\r\n{width}x{height} [0,0 {width}x{height}] ({TIFF_TILE}x{TIFF_TILE}) "
                   f"|AppMag = {10 / microns_per_pixel:.1f}|MPP = {microns_per_pixel:.6f}")
    with tifffile.TiffWriter(path, bigtiff=False) as tiff:
        for i, level in enumerate(levels):
            tiff.write(level, tile=(TIFF_TILE, TIFF_TILE), photometric="rgb", compression="zlib",
                       description=description if i == 0 else None, subfiletype=0 if i == 0 else 1, metadata=None)
