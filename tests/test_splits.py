import collections

import numpy as np
import pytest

from lungfake.data.splits import load_split, make_split, save_split
from lungfake.data.tiles import Tile
from lungfake.errors import DatasetError


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


def test_a_fold_only_moves_held_out_tiles_into_train():
    from dataclasses import replace

    from lungfake.data.splits import only_folds

    rows = make_split(*_tiles(), "grouped", seed=0)
    test_family = next(r.family for r in rows if r.side == "test")
    folded = [replace(r, side="train") if r.family == test_family else r for r in rows]
    assert only_folds(rows, folded) and only_folds(rows, rows)
    assert not only_folds(folded, rows)  # a train tile held out later could have been trained on
    trained_on = next(r for r in rows if r.side == "train")
    assert not only_folds(rows, [replace(r, side="val") if r is trained_on else r for r in rows])
    assert not only_folds(rows, folded[:-1])


def test_folding_a_saved_audit_leaves_a_clean_split_and_refuses_another_split(shared_tiny_dataset):
    from lungfake.data.leakage import audit, audit_report, fold_leaks_into_train, keypoints_by_path, leaks_from_report, rows_to_describe
    from lungfake.data.splits import only_folds
    from lungfake.data.tiles import list_tiles
    from lungfake.errors import SplitError

    tiles = list_tiles(shared_tiny_dataset)
    rows = make_split(tiles, [t.path for t in tiles], "grouped", seed=0)  # every tile its own family: copies straddle sides
    keys = keypoints_by_path(shared_tiny_dataset, rows)
    saved = audit_report(rows, audit(rows, keys, "tiny.csv")[1], "tiny.csv")
    leaks = leaks_from_report(rows, saved)
    assert leaks
    needed = {r.path for r in rows_to_describe(rows, leaks)}
    folded, moved, clean = fold_leaks_into_train(rows, {p: k for p, k in keys.items() if p in needed}, first_leaks=leaks)
    assert clean and moved and only_folds(rows, folded)
    assert audit(folded, keys, "tiny.csv")[1] == []
    pair = saved["pairs"][0]
    with pytest.raises(SplitError, match="audit this split again"):
        leaks_from_report(rows, {"pairs": [{**pair, "tile": pair["train_tile"], "train_tile": pair["tile"]}]})
