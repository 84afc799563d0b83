"""A scale-aware input without retraining: does bringing each tile to LC25000's nuclear size before scoring help under
the robustness benchmark's magnification shifts? Measured on validation tiles only (this is how the choice is made).

Each tile's nuclear size is estimated as the median side (square root of the area) of its haematoxylin blobs (colour
deconvolution, Otsu threshold, connected components); the reference is the median over every 20th grouped training
tile. A tile is then magnified by (reference / size) ** power (lungfake.robustness.magnified, clipped to 0.6x-1.6x):
power 0 is the plain tile, 1 brings every tile to the reference size, 0.5 half-way (in log scale). Prints, for every
3rd grouped validation tile unchanged and at 0.6x and 1.6x, each model's and the ensemble's accuracy per power, and
how the estimate follows the known magnification.

    python benchmarks/scale_normalisation.py [--data-dir ../shared/data/lc25000_lung] [--powers 0,0.5,1]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
from scale_tta import SHIFTS, accuracy_line, calibrated, validation_set  # the sibling benchmark: same tiles and shifts
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu

from lungfake.inference import LoadedModel
from lungfake.robustness import magnified

MIN_BLOB_PIXELS = 9  # smaller specks are noise, not nuclei


def nuclear_size(rgb: np.ndarray) -> float:
    """The median side (pixels) of the tile's haematoxylin blobs, or nan without any."""
    haematoxylin = cv2.GaussianBlur(rgb2hed(rgb)[..., 0].astype(np.float32), (0, 0), 1.0)
    mask = (haematoxylin > threshold_otsu(haematoxylin)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    areas = cv2.connectedComponentsWithStats(mask, connectivity=8)[2][1:, cv2.CC_STAT_AREA]
    areas = areas[areas >= MIN_BLOB_PIXELS]
    return float(np.sqrt(np.median(areas))) if len(areas) else float("nan")


def normalised(rgb: np.ndarray, reference: float, power: float) -> np.ndarray:
    size = nuclear_size(rgb)
    if power == 0 or not np.isfinite(size):
        return rgb
    return magnified(rgb, float(np.clip((reference / size) ** power, 0.6, 1.6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--powers", default="0,0.5,1")
    args = parser.parse_args()
    powers = [float(p) for p in args.powers.split(",")]
    evaluator, registry, calibration, tiles, labels = validation_set(args.data_dir)
    reference = float(np.nanmedian([nuclear_size(t) for t in evaluator.pixels("grouped", "train", 224)[::20]]))
    models = {arch: LoadedModel.load(entry) for arch, entry in registry.items()}
    clean_sizes = np.array([nuclear_size(t) for t in tiles])
    print(f"{len(tiles)} validation tiles; reference nuclear size {reference:.2f} px (every 20th training tile)")
    for shift, factor in SHIFTS.items():
        shifted = np.stack([magnified(t, factor) for t in tiles]) if factor != 1.0 else tiles
        ratio = np.array([nuclear_size(t) for t in shifted]) / clean_sizes
        print(f"{shift}: estimated size / the tile's own, 5th-50th-95th percentile "
              + " ".join(f"{v:.2f}" for v in np.nanpercentile(ratio, [5, 50, 95])))
        for power in powers:
            inputs = np.stack([normalised(t, reference, power) for t in shifted])
            members = {arch: calibrated(model, inputs) for arch, model in models.items()}
            print(f"  power {power:.1f}: " + accuracy_line(members, labels, calibration), flush=True)

if __name__ == "__main__":
    main()
