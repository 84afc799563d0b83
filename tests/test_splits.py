import collections

import numpy as np
import pytest

from lungfake.data import Tile
from lungfake.errors import DatasetError
from lungfake.splits import load_split, make_split, save_split


def _tiles(families_per_class=30, copies=10):
    tiles, families = [], []
    for label in ("lung_n", "lung_aca", "lung_scc"):
        for f in range(families_per_class):
            for c in range(copies):
                tiles.append(Tile(f"{label}/{label}{f}_{c}.jpeg", label))
                families.append(f"{label}-{f:04d}")
    return tiles, families


def _sides_of_each_family(rows) -> dict[str, set[str]]:
    sides = collections.defaultdict(set)
    for row in rows:
        sides[row.family].add(row.side)
    return sides


def test_grouped_split_keeps_families_whole_and_is_stratified():
    tiles, families = _tiles()
    rows = make_split(tiles, families, "grouped")
    assert all(len(s) == 1 for s in _sides_of_each_family(rows).values())
    for label in ("lung_n", "lung_aca", "lung_scc"):
        counts = collections.Counter(r.side for r in rows if r.label == label)
        assert counts == {"train": 210, "val": 60, "test": 30}


def test_random_split_puts_copies_on_both_sides():
    tiles, families = _tiles()
    rows = make_split(tiles, families, "random")
    assert sum(len(s) > 1 for s in _sides_of_each_family(rows).values()) > 30
    assert collections.Counter(r.side for r in rows) == {"train": 630, "val": 180, "test": 90}


def test_splits_are_deterministic_and_round_trip(tmp_path):
    tiles, families = _tiles()
    first = make_split(tiles, families, "grouped", seed=3)
    assert first == make_split(tiles, families, "grouped", seed=3)
    assert first != make_split(tiles, families, "grouped", seed=4)
    save_split(first, tmp_path / "grouped.csv")
    assert load_split(tmp_path / "grouped.csv") == first
    assert (tmp_path / "grouped.csv").read_text().splitlines()[0] == "path,label,family,side"


def test_unknown_protocol_and_missing_file():
    tiles, families = _tiles(3, 2)
    with pytest.raises(ValueError):
        make_split(tiles, families, "sideways")
    with pytest.raises(DatasetError, match="not found"):
        load_split(np.__file__ + ".missing.csv")
