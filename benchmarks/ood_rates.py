"""How often the screen refuses an image as not lung H&E (``ood``) and cautions about H&E unlike LC25000's
(``domain_shift``): on grouped test tiles (targets: ood under 2%), on the same tiles after everyday changes
(re-compression, blur, rescaling, a closer crop), stain-normalised to LC25000's colours (Reinhard, Macenko) and under
every shift of the robustness table, on the external development tiles from another hospital (target: ood on none),
and on non-histology images built offline (target: ood over 95%). None of these was used to fit the screen. Each
image is screened as the scorer screens it: its view under the scale setting. Tile rates carry a 95% interval from a
bootstrap over families; counts of other images a Wilson interval.

Usage: python benchmarks/ood_rates.py [--data-dir ../shared/data/lc25000_lung] [--external-dir DIR] [--save-misses DIR]
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from lungfake.data.splits import load_split, rows_on
from lungfake.data.tiles import resolve_data_root
from lungfake.evaluation.colour import ColourTarget
from lungfake.evaluation.robustness import external_colour_target, named_shifts
from lungfake.evaluation.stain_normalisation import MacenkoTarget, macenko, reinhard
from lungfake.explain.faithfulness import family_interval
from lungfake.serving.images import decode_image, read_image_file
from lungfake.serving.inference import LoadedModel, OodScreen
from lungfake.serving.registry import Registry, load_ood_entry, load_registry, load_scale_normalisation
from lungfake.serving.scale import as_scored
from lungfake.serving.store import WeightsStore

BATCH = 64
EXTERNAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "external_dev"


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
    shifted = sum(bool(v.domain_shift) for v in results)
    print(f"grouped test tiles: refused {tile_rate(results, [r.family for r in rows])} (target < 1%), by class {dict(flagged)}; "
          f"domain shift {shifted}/{len(rows)} = {shifted / len(rows):.2%}; {seconds / len(rows) * 1000:.0f} ms per tile")
    reasons = Counter(v.reason.split(" (")[0] for v in results if v.ood)
    reasons.update(v.domain_shift_reason.split(":")[0] for v in results if v.domain_shift)
    for reason, n in reasons.items():
        print(f"  {n} x {reason}")


def wilson(hits: int, total: int) -> str:
    """A 95% Wilson score interval of a proportion, in percent."""
    if not total:
        return "-"
    z, p = 1.96, hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return f"{100 * max(0.0, centre - half):.1f}-{100 * min(1.0, centre + half):.1f}%"


def tile_rate(results: list, families: list[str]) -> str:
    """Refused share of tiles with its 95% family-bootstrap interval."""
    refused = np.array([bool(v.ood) for v in results], float)
    low, high = family_interval(refused, np.asarray(families))
    return f"{int(refused.sum())}/{len(refused)} = {refused.mean():.1%} ({100 * low:.1f}-{100 * high:.1f}%)"


def normalised_and_shifted_rates(screen: OodScreen, root: Path, every: int = 5) -> None:
    """Every 5th grouped test tile stain-normalised to LC25000's training colours, and under each named shift of the
    robustness table (target for each: refused <= 2%)."""
    rows = load_split(WeightsStore.resolve().split_csv("grouped"))
    tests = rows_on(rows, "test")[::every]
    tiles, families = [read_image_file(root / r.path) for r in tests], [r.family for r in tests]
    reference = [read_image_file(root / r.path) for r in rows_on(rows, "train")[::20]]
    colours, stains = ColourTarget.of(np.stack(reference)), MacenkoTarget.of(reference)
    print(f"the same test tiles normalised and shifted (every {every}th, {len(tiles)} tiles; refused, 95% interval):")
    changes = {"Reinhard to LC25000's training colours": lambda x: reinhard(x, colours),
               "Macenko to LC25000's training stains": lambda x: macenko(x, stains),
               **named_shifts(external_colour_target(EXTERNAL), colours)}
    for change, apply in changes.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # lab2rgb clipping a few out-of-gamut pixels
            results = verdicts(screen, [apply(t) for t in tiles])
        shifted = sum(bool(v.domain_shift) for v in results)
        print(f"  {change}: refused {tile_rate(results, families)}, cautioned {shifted / len(tiles):.1%}")


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
    print(f"external development tiles (another hospital, measuring only): ood {flagged}/{len(files)} "
          f"({wilson(flagged, len(files))}; target 0), "
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
        print(f"  {category}: {caught}/{len(items)} refused = {caught / len(items):.1%} ({wilson(caught, len(items))}; of the "
              f"rest, {shifted} cautioned as "
              f"domain shift); missed: {', '.join(misses[:8]) or 'none'}")
        if save_misses:
            save_misses.mkdir(parents=True, exist_ok=True)
            for (name, data), v in zip(items, results):
                if not v.ood:
                    (save_misses / f"{name}.img").write_bytes(data)
    print(f"non-histology images: {caught_all}/{total_all} refused = {caught_all / max(total_all, 1):.1%} "
          f"({wilson(caught_all, total_all)}; target >= 97%, H&E-coloured fakes >= 90%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--external-dir", type=Path, default=EXTERNAL)
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
          f"feature limit {screen.reference.features.limit:.2f} ({entry.feature_model} features, quantile {entry.quantile} of val tiles), "
          f"two-stain limit {screen.reference.two_stain_limit}")
    root = resolve_data_root(args.data_dir)
    external_rates(screen, args.external_dir)
    test_tile_rate(screen, root)
    changed_tile_rates(screen, root)
    normalised_and_shifted_rates(screen, root)
    if not args.skip_nonhistology:
        nonhistology_rate(screen, args.save_misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
