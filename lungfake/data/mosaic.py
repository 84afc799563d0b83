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


def write_sparse_slide(path: str | Path, side: int, patches: list[tuple[int, int, np.ndarray]], microns_per_pixel: float,
                       downsamples: tuple[int, ...] = (1, 4, 16, 64)) -> Path:
    """A large square slide, side x side pixels of glass with tissue patches (level-0 x, y, RGB) on it, written tile by
    tile, level by level, so that no level is ever held in memory whole (100,000 px a side is 30 GB raw)."""
    levels = [(d, max(1, side // d), [(x // d, y // d, _shrunk(image, d)) for x, y, image in patches]) for d in downsamples]
    height, width = side, side
    description = (f"Aperio Image Library lungfake sparse slide\r\n{width}x{height} [0,0 {width}x{height}] "
                   f"({TIFF_TILE}x{TIFF_TILE}) |AppMag = {10 / microns_per_pixel:.1f}|MPP = {microns_per_pixel:.6f}")
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        for i, (_, level_side, placed) in enumerate(levels):
            tiff.write(_tiles(level_side, placed), shape=(level_side, level_side, 3), dtype=np.uint8,
                       tile=(TIFF_TILE, TIFF_TILE), photometric="rgb", compression="zlib",
                       description=description if i == 0 else None, subfiletype=0 if i == 0 else 1, metadata=None)
    return Path(path)


def _shrunk(image: np.ndarray, downsample: int) -> np.ndarray:
    if downsample == 1:
        return image
    size = (max(1, image.shape[1] // downsample), max(1, image.shape[0] // downsample))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _tiles(side: int, placed: list[tuple[int, int, np.ndarray]]):
    """The level's TIFF tiles, row by row: glass, with whatever part of a patch falls in each."""
    glass = np.full((TIFF_TILE, TIFF_TILE, 3), GLASS, np.uint8)
    for top in range(0, side, TIFF_TILE):
        for left in range(0, side, TIFF_TILE):
            hits = [(x, y, im) for x, y, im in placed if x < left + TIFF_TILE and x + im.shape[1] > left
                    and y < top + TIFF_TILE and y + im.shape[0] > top]
            if not hits:
                yield glass
                continue
            tile = glass.copy()
            for x, y, image in hits:
                y0, x0 = max(y, top), max(x, left)
                y1, x1 = min(y + image.shape[0], top + TIFF_TILE), min(x + image.shape[1], left + TIFF_TILE)
                tile[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0 - y : y1 - y, x0 - x : x1 - x]
            yield tile
