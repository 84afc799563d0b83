"""Estimate LC25000's field of view from nucleus size (LC25000 does not record its magnification).

Round, compact haematoxylin blobs in benign lung tiles (lymphocytes, pneumocytes: about 7 um across in
tissue) are measured; their median diameter in pixels gives microns per pixel. Prints the figures behind
lungfake.region.LC25000_TILE_MICRONS. Usage: python scripts/estimate_tile_scale.py [--tiles 150]
"""
import argparse
import random

import numpy as np
from skimage import color, filters, io, measure

from lungfake.data.tiles import resolve_data_root

NUCLEUS_MICRONS = 7.0


def round_nucleus_diameters(path) -> list[float]:
    haematoxylin = color.rgb2hed(io.imread(path))[..., 0]
    mask = haematoxylin > filters.threshold_otsu(haematoxylin)
    return [r.equivalent_diameter_area for r in measure.regionprops(measure.label(mask))
            if r.area >= 6 and r.eccentricity < 0.8 and r.solidity > 0.9]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--tiles", type=int, default=150)
    args = parser.parse_args()
    files = sorted((resolve_data_root(args.data_dir) / "lung_n").glob("*.jpeg"))
    sample = random.Random(0).sample(files, min(args.tiles, len(files)))
    diameters = np.array([d for path in sample for d in round_nucleus_diameters(path)])
    median = float(np.median(diameters))
    side = io.imread(sample[0]).shape[0]
    microns_per_pixel = NUCLEUS_MICRONS / median
    print(f"{len(diameters)} round nuclei in {len(sample)} benign tiles; diameter px quartiles "
          f"{np.percentile(diameters, [25, 50, 75]).round(1).tolist()}")
    print(f"assuming {NUCLEUS_MICRONS} um nuclei: {microns_per_pixel:.2f} um/px at {side} px, "
          f"a tile {microns_per_pixel * side:.0f} um across")


if __name__ == "__main__":
    main()
