"""Near-duplicates across a split: the audit, and the repair that folds leaking families into train."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .classes import CLASS_NAMES
from .data import read_rgb
from .families import MATCH_THRESHOLD, WORK_SIZE, best_matches
from .splits import SplitRow, load_split


def _pixels(root: Path, rows: list[SplitRow]) -> np.ndarray:
    arrays = [read_rgb(root / r.path, WORK_SIZE) for r in rows]
    if any(a is None for a in arrays):
        raise ValueError("unreadable tiles must be dropped from a split before auditing it")
    return np.stack(arrays) if arrays else np.zeros((0, WORK_SIZE, WORK_SIZE, 3), np.uint8)


def duplicates_in_train(
    rows: list[SplitRow], root: Path, side: str, threshold: float, train_families: set[str] | None = None
) -> list[tuple[SplitRow, SplitRow, float]]:
    """(tile on `side`, its near-duplicate in train, score) for every such tile, class by class;
    train tiles are limited to train_families when given."""
    found = []
    for label in CLASS_NAMES:
        queries = [r for r in rows if r.split == side and r.label == label]
        train = [r for r in rows if r.split == "train" and r.label == label
                 and (train_families is None or r.family in train_families)]
        scores, index = best_matches(_pixels(root, queries), _pixels(root, train))
        found.extend((queries[i], train[index[i]], float(scores[i])) for i in np.flatnonzero(scores >= threshold))
    return found


def audit_split(split_csv: Path, root: Path, threshold: float | None = None) -> dict:
    threshold = MATCH_THRESHOLD if threshold is None else threshold
    rows = load_split(split_csv)
    duplicates = duplicates_in_train(rows, root, "test", threshold)
    per_class = {
        label: {
            "test_tiles": sum(r.split == "test" and r.label == label for r in rows),
            "with_duplicate_in_train": sum(q.label == label for q, _, _ in duplicates),
        }
        for label in CLASS_NAMES
    }
    return {
        "split": split_csv.name,
        "threshold": threshold,
        "test_tiles": sum(c["test_tiles"] for c in per_class.values()),
        "test_tiles_with_duplicate_in_train": len(duplicates),
        "per_class": per_class,
        "examples": [{"test": q.path, "train": t.path, "score": round(s, 3)} for q, t, s in duplicates[:20]],
    }


def fold_leaks_into_train(rows: list[SplitRow], root: Path, threshold: float = MATCH_THRESHOLD, max_rounds: int = 5) -> list[SplitRow]:
    """Move every val/test family with a near-duplicate in train into train (merged with it), until none is left.

    Family detection can miss a copy; this closes the gap with the same wider search the audit uses.
    After the first round only the families just moved can create new matches, so only they are searched.
    """
    searched: set[str] | None = None
    for _ in range(max_rounds):
        moves = {q.family: t.family for side in ("test", "val") for q, t, _ in duplicates_in_train(rows, root, side, threshold, searched)}
        if not moves:
            return rows
        print(f"folding {len(moves)} leaking famil{'y' if len(moves) == 1 else 'ies'} into train", file=sys.stderr, flush=True)
        rows = [replace(r, family=moves[r.family], split="train") if r.family in moves else r for r in rows]
        searched = set(moves.values())
    return rows
