"""How often the screen refuses an image as not lung H&E (``ood``) and cautions about H&E unlike LC25000's
(``domain_shift``): on grouped test tiles (targets: ood under 2%), on the same tiles after everyday changes
(re-compression, blur, rescaling, a closer crop), on the external development tiles from another hospital
(target: ood on none), and on non-histology images built offline (target: ood over 95%). None of these was
used to fit the screen. Each image is screened as the scorer screens it: its view under the scale setting.

Usage: python benchmarks/ood_rates.py [--data-dir ../shared/data/lc25000_lung] [--external-dir DIR] [--save-misses DIR]
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

from lungfake.data.splits import load_split, rows_on
from lungfake.data.tiles import resolve_data_root
from lungfake.serving.images import decode_image, read_image_file
from lungfake.serving.inference import LoadedModel, OodScreen
from lungfake.serving.registry import Registry, load_ood_entry, load_registry, load_scale_normalisation
from lungfake.serving.scale import as_scored
from lungfake.serving.store import WeightsStore

BATCH = 64


def verdicts(screen: OodScreen, images: list) -> list:
    """The screen's verdicts on what the scorer shows it: each image's view under the registry's scale setting."""
    scale, out = load_scale_normalisation(), []
    for start in range(0, len(images), BATCH):
        out += screen.assess(list(as_scored(images[start : start + BATCH], scale)), {})
    return out


def test_tile_rate(screen: OodScreen, root: Path) -> None:
    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "test")
    started = time.perf_counter()
    results = verdicts(screen, [read_image_file(root / r.path) for r in rows])
    seconds = time.perf_counter() - started
    flagged = Counter(r.label for r, v in zip(rows, results) if v.ood)
    total, shifted = sum(flagged.values()), sum(bool(v.domain_shift) for v in results)
    print(f"grouped test tiles: ood {total}/{len(rows)} = {total / len(rows):.2%} (target < 2%), by class {dict(flagged)}; "
          f"domain shift {shifted}/{len(rows)} = {shifted / len(rows):.2%}; {seconds / len(rows) * 1000:.0f} ms per tile")
    reasons = Counter(v.reason.split(" (")[0] for v in results if v.ood)
    reasons.update(v.domain_shift_reason.split(":")[0] for v in results if v.domain_shift)
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
        results = verdicts(screen, [apply(t) for t in tiles])
        flagged, shifted = sum(bool(v.ood) for v in results), sum(bool(v.domain_shift) for v in results)
        print(f"  {change}: ood {flagged}/{len(tiles)} = {flagged / len(tiles):.1%}, domain shift {shifted / len(tiles):.1%}")


def external_rates(screen: OodScreen, external_dir: Path) -> None:
    files = sorted(external_dir.rglob("*.png")) if external_dir.is_dir() else []
    if not files:
        print(f"external development tiles: none at {external_dir}")
        return
    results = verdicts(screen, [read_image_file(f) for f in files])
    flagged, shifted = sum(bool(v.ood) for v in results), sum(bool(v.domain_shift) for v in results)
    print(f"external development tiles (another hospital, measuring only): ood {flagged}/{len(files)} (target 0), "
          f"domain shift {shifted}/{len(files)}")
    for f, v in zip(files, results):
        print(f"  {f.parent.name}/{f.name}: ood={v.ood} domain_shift={v.domain_shift} "
              f"{(v.reason if v.ood else v.domain_shift_reason).split(':')[0].split(' (')[0]}")


def nonhistology_rate(screen: OodScreen, save_misses: Path | None) -> None:
    sys.path.insert(0, str(Path(__file__).parent / "sets"))  # the set's builder, not a benchmark of its own
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
        shifted = sum(bool(v.domain_shift) for v in results)
        print(f"  {category}: {caught}/{len(items)} refused = {caught / len(items):.1%} (of the rest, {shifted} cautioned as "
              f"domain shift); missed: {', '.join(misses[:8]) or 'none'}")
        if save_misses:
            save_misses.mkdir(parents=True, exist_ok=True)
            for (name, data), v in zip(items, results):
                if not v.ood:
                    (save_misses / f"{name}.img").write_bytes(data)
    print(f"non-histology images: {caught_all}/{total_all} flagged = {caught_all / max(total_all, 1):.1%} (target > 95%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    external = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "external_dev"
    parser.add_argument("--external-dir", type=Path, default=external)
    parser.add_argument("--skip-nonhistology", action="store_true")
    parser.add_argument("--save-misses", type=Path, help="write missed non-histology images here for inspection")
    args = parser.parse_args()
    entry = load_ood_entry()
    if entry is None:
        print("no out-of-distribution reference registered; run python -m lungfake ood-fit")
        return 1
    model = LoadedModel.load(load_registry()[entry.feature_model])
    screen = OodScreen.load([model], Registry.load())
    tissue = screen.reference.tissue
    print(f"checks: tissue limit {tissue.limit if tissue else float('nan'):.2f}, stain limit {screen.reference.stain.limit:.2f}, "
          f"feature limit {screen.reference.features.limit:.2f} ({entry.feature_model} features, quantile {entry.quantile} of val tiles)")
    root = resolve_data_root(args.data_dir)
    external_rates(screen, args.external_dir)
    test_tile_rate(screen, root)
    changed_tile_rates(screen, root)
    if not args.skip_nonhistology:
        nonhistology_rate(screen, args.save_misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
