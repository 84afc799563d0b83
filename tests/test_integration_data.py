"""Integration tests on the real LC25000 lung tiles in ../shared (skipped where absent)."""
import collections
import csv

import numpy as np

from lungfake.data import list_tiles, read_rgb
from lungfake.families import detect_families
from tests.conftest import DATA_DIR, REPO, needs_data

SPLITS = REPO / "weights" / "splits"


def _rows(protocol):
    with open(SPLITS / f"{protocol}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@needs_data
def test_real_dataset_layout():
    tiles = list_tiles(DATA_DIR)
    assert collections.Counter(t.label for t in tiles) == {"lung_n": 5000, "lung_aca": 5000, "lung_scc": 5000}


@needs_data
def test_committed_splits_cover_every_tile_once_in_70_20_10():
    paths = {t.path for t in list_tiles(DATA_DIR)}
    for protocol in ("grouped", "random"):
        rows = _rows(protocol)
        assert {r["path"] for r in rows} == paths and len(rows) == len(paths)
        for label in ("lung_n", "lung_aca", "lung_scc"):
            counts = collections.Counter(r["split"] for r in rows if r["label"] == label)
            assert abs(counts["train"] - 3500) <= 150 and abs(counts["test"] - 500) <= 50, (protocol, label, counts)


def test_grouped_split_never_splits_a_family_and_random_does():
    def sides(rows):
        found = collections.defaultdict(set)
        for r in rows:
            found[r["family"]].add(r["split"])
        return found

    assert all(len(s) == 1 for s in sides(_rows("grouped")).values())
    assert sum(len(s) > 1 for s in sides(_rows("random")).values()) > 200


@needs_data
def test_detection_regroups_real_families():
    rows = [r for r in _rows("grouped") if r["label"] == "lung_scc"]
    by_family = collections.defaultdict(list)
    for r in rows:
        by_family[r["family"]].append(r["path"])
    chosen = [f for f, members in sorted(by_family.items()) if 10 <= len(members) <= 30][:4]
    paths = [p for f in chosen for p in by_family[f]]
    truth = [f for f in chosen for _ in by_family[f]]
    labels = detect_families(np.stack([read_rgb(DATA_DIR / p, 128) for p in paths])).labels
    for family in chosen:
        found = {labels[i] for i, t in enumerate(truth) if t == family}
        assert len(found) == 1, family
    assert len(set(labels)) == len(chosen)
