"""How the served models hold up when a tile changes the way another lab, camera or microscope changes it.

Prints, for every served model and the ensemble, the accuracy on every 3rd grouped test tile under each
named shift (lungfake/robustness.py), the colour-neutral accuracy on all grouped test tiles, and what each
model says about the external development tiles (another hospital's lung H&E; measuring only).

    python benchmarks/robustness.py [--data-dir ../shared/data/lc25000_lung] [--external-dir ../shared/data/external_dev]
                                    [--external-only]
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lungfake.data.tiles import resolve_data_root
from lungfake.evaluation.evaluator import Evaluator
from lungfake.scoring.scoring import Scorer

REPO = Path(__file__).resolve().parent.parent


def shift_table(evaluator: Evaluator) -> dict[str, dict[str, float]]:
    from lungfake.serving.inference import LoadedModel
    from lungfake.serving.registry import load_registry

    tables, parts = {}, []
    for entry in load_registry(evaluator.store.root).values():
        model = LoadedModel.load(entry, evaluator.store.root)
        shifted = evaluator.shift_metrics(model, entry.input_size, list(entry.class_names), entry.temperature)
        neutral = {"colour-neutral (all test tiles)": shifted["colour_neutral_accuracy"]["value"]}
        tables[entry.display_name] = {**shifted["robustness"]["accuracy"], **neutral}
        parts.append(shifted)
    if len(parts) > 1:
        y = evaluator.labels("grouped", "test", list(entry.class_names))[:: evaluator.ROBUSTNESS_EVERY]
        ensemble = {"clean": float((np.mean([p["_clean_every"] for p in parts], axis=0).argmax(1) == y).mean())}
        for name in parts[0]["_shifted"]:
            ensemble[name] = float((np.mean([p["_shifted"][name] for p in parts], axis=0).argmax(1) == y).mean())
        tables["Ensemble"] = ensemble
    return tables


def external_results(external_dir: Path) -> list[str]:
    manifest = external_dir / "manifest.csv"
    if not manifest.exists():
        return [f"no external development tiles at {external_dir}"]
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    path_key = next(k for k in rows[0] if "path" in k or "file" in k)
    label_key = next(k for k in rows[0] if k in ("label", "class", "lc25000_class"))
    images = [np.asarray(Image.open(external_dir / r[path_key]).convert("RGB")) for r in rows]
    scores = Scorer.load().score(images, [r[path_key] for r in rows])
    lines = []
    names = list(scores[0].models) + (["ensemble"] if scores[0].ensemble else [])
    for arch in names:
        picked = [s.ensemble if arch == "ensemble" else s.models[arch] for s in scores]
        right = sum(p.predicted == r[label_key] for p, r in zip(picked, rows))
        lines.append(f"{arch}: right on {right} of {len(rows)} external tiles")
    lines.append(f"refused as not H&E (ood) on {sum(bool(s.ood.ood) for s in scores)} of {len(rows)}; cautioned as "
                 f"domain shift on {sum(bool(s.ood.domain_shift) for s in scores)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--external-dir", default=str(REPO.parent / "shared" / "data" / "external_dev"))
    parser.add_argument("--external-only", action="store_true", help="skip the shift table (evaluate writes it to the metrics)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.external_only:
        print("\n".join(external_results(Path(args.external_dir))))
        return
    evaluator = Evaluator(resolve_data_root(args.data_dir), external_dir=Path(args.external_dir))
    tables = shift_table(evaluator)
    models = list(tables)
    print("| shift | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for shift in tables[models[0]]:
        print(f"| {shift} | " + " | ".join(f"{tables[m].get(shift, float('nan')):.1%}" for m in models) + " |")
    for line in external_results(Path(args.external_dir)):
        print(line)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
