"""Split protocols (grouped, random): which side (train/val/test) each tile lands on, as a CSV."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungfake.classes import CLASS_NAMES
from lungfake.data.tiles import Tile
from lungfake.errors import DatasetError

PROTOCOLS = ("grouped", "random")
SIDE_FRACTIONS = {"train": 0.7, "val": 0.2, "test": 0.1}
SPLIT_COLUMNS = ("path", "label", "family", "side")


@dataclass(frozen=True)
class SplitRow:
    path: str
    label: str
    family: str
    side: str  # train, val or test


def _assign_groups(group_sizes: dict[str, int], rng: np.random.Generator) -> dict[str, str]:
    """Shuffle groups, then fill test, val and train in turn up to their share of tiles."""
    order = list(group_sizes)
    rng.shuffle(order)
    total = sum(group_sizes.values())
    targets = {"test": SIDE_FRACTIONS["test"] * total, "val": SIDE_FRACTIONS["val"] * total}
    assignment, filled = {}, {"test": 0, "val": 0}
    for group in order:
        side = next((s for s in ("test", "val") if filled[s] + group_sizes[group] / 2 <= targets[s]), "train")
        if side != "train":
            filled[side] += group_sizes[group]
        assignment[group] = side
    return assignment


def make_split(tiles: list[Tile], families: list[str], protocol: str, seed: int = 0) -> list[SplitRow]:
    """70/20/10 split stratified by class: whole families per side (grouped) or tiles (random)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown split protocol {protocol!r}; choose one of {PROTOCOLS}.")
    rows: list[SplitRow] = []
    for class_offset, label in enumerate(CLASS_NAMES):
        members = [(t, f) for t, f in zip(tiles, families) if t.label == label]
        group_of = (lambda t, f: f) if protocol == "grouped" else (lambda t, f: t.path)
        sizes: dict[str, int] = {}
        for tile, family in members:
            key = group_of(tile, family)
            sizes[key] = sizes.get(key, 0) + 1
        assignment = _assign_groups(sizes, np.random.default_rng(seed + class_offset))
        rows.extend(SplitRow(t.path, t.label, f, assignment[group_of(t, f)]) for t, f in members)
    return rows


def save_split(rows: list[SplitRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        writer.writerows((r.path, r.label, r.family, r.side) for r in rows)


def load_split(path: Path) -> list[SplitRow]:
    if not Path(path).is_file():
        raise DatasetError(f"Split file {path} not found; create it with `python -m lungfake split`.")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SPLIT_COLUMNS:
            raise DatasetError(f"Split file {path} must have columns {','.join(SPLIT_COLUMNS)}.")
        return [SplitRow(**row) for row in reader]


def rows_on(rows: list[SplitRow], side: str) -> list[SplitRow]:
    return [r for r in rows if r.side == side]


def split_sha256(path: Path) -> str:
    """The identity of a split: metrics record it so a changed split is noticed."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def only_folds(earlier: list[SplitRow], later: list[SplitRow]) -> bool:
    """Whether later is earlier with some val/test tiles moved into train, and nothing else changed: a model
    trained on earlier then never saw a tile that later holds out, nor (later's audit being clean) a copy of one."""
    before = {r.path: r for r in earlier}
    if len(before) != len(later) or any(r.path not in before for r in later):
        return False
    return all(r.label == before[r.path].label and (r.side == before[r.path].side or r.side == "train") for r in later)


def folds_saved_split(earlier_csv: Path, later: list[SplitRow]) -> bool:
    """Whether a kept earlier split exists and later only folds it (only_folds)."""
    return earlier_csv.is_file() and only_folds(load_split(earlier_csv), later)
