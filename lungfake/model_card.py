"""The facts the model card states, read from the committed registry, splits and metrics."""
from __future__ import annotations

import collections
from pathlib import Path

from .classes import display_name
from .evaluation import load_all_metrics
from .registry import load_registry, weights_dir
from .splits import load_split


def model_card_facts(folder: Path | None = None) -> dict:
    registry = load_registry(folder)
    metrics = load_all_metrics(folder)
    grouped = load_split(weights_dir(folder) / "splits" / "grouped.csv")
    families = collections.defaultdict(set)
    for row in grouped:
        families[row.label].add(row.family)
    return {
        "families_per_class": {display_name(label): len(f) for label, f in families.items()},
        "families_total": sum(len(f) for f in families.values()),
        "grouped_test_duplicates": _audit_sentence(weights_dir(folder)),
        "models": [
            (entry, {p: m for (a, p), m in sorted(metrics.items()) if a == arch}) for arch, entry in registry.items()
        ],
    }


def _audit_sentence(folder: Path) -> str:
    import json

    path = folder / "splits" / "grouped_audit.json"
    if not path.exists():
        return "the near-duplicate audit has not been run"
    report = json.loads(path.read_text())
    return (f"the audit found {report['test_tiles_with_duplicate_in_train']} of {report['test_tiles']} test tiles "
            "with a near-duplicate in train")
