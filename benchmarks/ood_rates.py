"""How often the out-of-distribution check warns: on grouped test tiles (target under 2%), on the same
tiles after everyday changes (re-compression, blur, rescaling, a closer crop), and on non-histology
images built offline (target over 95%). None of these was used to fit the check.

Usage: python benchmarks/ood_rates.py [--data-dir ../shared/data/lc25000_lung] [--save-misses DIR]
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lungfake.data import resolve_data_root
from lungfake.images import decode_image, read_image_file
from lungfake.inference import LoadedModel, OodScreen
from lungfake.registry import load_ood_entry, load_registry
from lungfake.splits import load_split, rows_on
from lungfake.store import WeightsStore

BATCH = 64


def verdicts(screen: OodScreen, images: list) -> list:
    out = []
    for start in range(0, len(images), BATCH):
        out += screen.assess(images[start : start + BATCH], {})
    return out


def test_tile_rate(screen: OodScreen, root: Path) -> None:
    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "test")
    started = time.perf_counter()
    results = verdicts(screen, [read_image_file(root / r.path) for r in rows])
    seconds = time.perf_counter() - started
    flagged = Counter(r.label for r, v in zip(rows, results) if v.ood)
    total = sum(flagged.values())
    print(f"grouped test tiles: {total}/{len(rows)} flagged = {total / len(rows):.2%} (target < 2%); "
          f"by class {dict(flagged)}; {seconds / len(rows) * 1000:.0f} ms per tile")
    reasons = Counter(v.reason.split(" (")[0] for v in results if v.ood)
    for reason, n in reasons.items():
        print(f"  {n} x {reason}")


def _recompressed(rgb, quality: int):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return decode_image(buffer.getvalue(), "recompressed.jpg")


def _resized(rgb, side: int):
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BICUBIC))


CHANGES = {
    "JPEG quality 50": lambda rgb: _recompressed(rgb, 50),
    "Gaussian blur 0.7 px": lambda rgb: np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(0.7))),
    "upscaled to 768 px (the public release's size)": lambda rgb: _resized(rgb, 768),
    "1.25x magnification (centre crop)": lambda rgb: _resized(rgb, 280)[28:252, 28:252],
    "0.8x magnification": lambda rgb: _resized(rgb, 180),
    "2x magnification (quarter crop)": lambda rgb: rgb[: rgb.shape[0] // 2, : rgb.shape[1] // 2],
}


def changed_tile_rates(screen: OodScreen, root: Path, every: int = 5) -> None:
    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "test")[::every]
    tiles = [read_image_file(root / r.path) for r in rows]
    print(f"the same test tiles after everyday changes (every {every}th, {len(tiles)} tiles):")
    for change, apply in CHANGES.items():
        flagged = sum(bool(v.ood) for v in verdicts(screen, [apply(t) for t in tiles]))
        print(f"  {change}: {flagged}/{len(tiles)} flagged = {flagged / len(tiles):.1%}")


def nonhistology_rate(screen: OodScreen, save_misses: Path | None) -> None:
    import nonhistology

    started = time.perf_counter()
    sets = nonhistology.build()
    print(f"built the non-histology set in {time.perf_counter() - started:.0f} s")
    caught_all = total_all = 0
    for category, items in sets.items():
        if not items:
            print(f"  {category}: none available on this machine")
            continue
        images = [decode_image(data, name) for name, data in items]
        results = verdicts(screen, images)
        caught = sum(bool(v.ood) for v in results)
        caught_all, total_all = caught_all + caught, total_all + len(items)
        misses = [name for (name, _), v in zip(items, results) if not v.ood]
        by_check = Counter("stain" if "colours" in v.reason else "features" for v in results if v.ood)
        print(f"  {category}: {caught}/{len(items)} flagged = {caught / len(items):.1%} (by the stain check {by_check['stain']}, "
              f"by the feature check {by_check['features']}); missed: {', '.join(misses[:8]) or 'none'}")
        if save_misses:
            save_misses.mkdir(parents=True, exist_ok=True)
            for (name, data), v in zip(items, results):
                if not v.ood:
                    (save_misses / f"{name}.img").write_bytes(data)
    print(f"non-histology images: {caught_all}/{total_all} flagged = {caught_all / max(total_all, 1):.1%} (target > 95%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--save-misses", type=Path, help="write missed non-histology images here for inspection")
    args = parser.parse_args()
    entry = load_ood_entry()
    if entry is None:
        print("no out-of-distribution reference registered; run python -m lungfake ood-fit")
        return 1
    model = LoadedModel.load(load_registry()[entry.feature_model])
    screen = OodScreen.load([model])
    print(f"check: stain limit {screen.reference.stain.limit:.2f}, feature limit {screen.reference.features.limit:.2f} "
          f"({entry.feature_model} features, quantile {entry.quantile} of val tiles each)")
    root = resolve_data_root(args.data_dir)
    test_tile_rate(screen, root)
    changed_tile_rates(screen, root)
    nonhistology_rate(screen, args.save_misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
