"""A scale-aware input without retraining: does bringing each tile to LC25000's nuclear size before scoring help under
the robustness benchmark's magnification shifts? Measured on validation tiles only (this is how the choice is made).

Each tile's nuclear size is estimated as the median side (square root of the area) of its haematoxylin blobs (colour
deconvolution, Otsu threshold, connected components); the reference is the median over every 20th grouped training
tile. A tile is then magnified by (reference / size) ** power (lungfake.serving.scale, to 1%, clipped to 0.6x-1.6x), as the
scorer does with the registry's power (chosen here):
power 0 is the plain tile, 1 brings every tile to the reference size, 0.5 half-way (in log scale). Prints, for every
3rd grouped validation tile unchanged and at 0.6x and 1.6x, each model's and the ensemble's accuracy per power, and
how the estimate follows the known magnification.

    python benchmarks/scale_normalisation.py [--data-dir ../shared/data/lc25000_lung] [--powers 0,0.5,1] [--other-labs]
        [--factor-ranges 0.6-1.6,0.6-1.0]
"""
from __future__ import annotations

import argparse

import numpy as np
from scale_tta import SHIFTS, accuracy_line, calibrated, validation_set  # the sibling benchmark: same tiles and shifts

from lungfake.classes import CLASS_NAMES
from lungfake.evaluation.colour import ColourTarget
from lungfake.evaluation.robustness import another_lab, magnified
from lungfake.serving.inference import LoadedModel
from lungfake.serving.scale import ScaleNormalisation, fit_reference, nuclear_size

BENIGN = CLASS_NAMES.index("lung_n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--powers", default="0,0.5,1")
    parser.add_argument("--other-labs", action="store_true", help="also each tile as another lab might show it")
    parser.add_argument("--factor-ranges", default="0.6-1.6", help="magnification limits to try, e.g. 0.6-1.6,0.6-1.0")
    args = parser.parse_args()
    powers = [float(p) for p in args.powers.split(",")]
    ranges = [tuple(float(x) for x in r.split("-")) for r in args.factor_ranges.split(",")]
    evaluator, registry, calibration, tiles, labels = validation_set(args.data_dir)
    reference = fit_reference(evaluator.pixels("grouped", "train", 224)[::20])
    models = {arch: LoadedModel.load(entry) for arch, entry in registry.items()}
    clean_sizes = np.array([nuclear_size(t) for t in tiles])
    print(f"{len(tiles)} validation tiles; reference nuclear size {reference:.2f} px (every 20th training tile)")
    for shift, shifted in shifted_sets(tiles, args.other_labs).items():
        ratio = np.array([nuclear_size(t) for t in shifted]) / clean_sizes
        print(f"{shift}: estimated size / the tile's own, 5th-50th-95th percentile "
              + " ".join(f"{v:.2f}" for v in np.nanpercentile(ratio, [5, 50, 95])))
        for power, (low, high) in [(p, r) for p in powers for r in ranges if p > 0 or r == ranges[0]]:
            inputs = np.stack([view.pixels for view in ScaleNormalisation(reference, power, low, high).views(shifted)])
            members = {arch: calibrated(model, inputs) for arch, model in models.items()}
            print(f"  power {power:.2f}, {low}x-{high}x: " + accuracy_line(members, labels, calibration), flush=True)
            print("    cancer vs benign: " + "  ".join(
                f"{arch} {np.mean((p.argmax(1) == BENIGN) == (labels == BENIGN)):.2%}" for arch, p in members.items()), flush=True)


def shifted_sets(tiles: np.ndarray, other_labs: bool) -> dict[str, np.ndarray]:
    """The tiles unchanged, at 0.6x and 1.6x, and (with --other-labs) each drawn once as another lab might show it
    (robustness.another_lab: magnification 0.5-2x, stain amounts, restaining, gamma, blur, JPEG; its own colours as
    the restaining centre), the validation stand-in for other labs' tissue."""
    sets = {shift: np.stack([magnified(t, factor) for t in tiles]) if factor != 1.0 else tiles for shift, factor in SHIFTS.items()}
    if other_labs:
        rng, own_colour = np.random.default_rng(0), ColourTarget.of(tiles)
        sets["as other labs might show them"] = np.stack([another_lab(t, rng, own_colour) for t in tiles])
    return sets

if __name__ == "__main__":
    main()
