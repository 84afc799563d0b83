"""The error browser's data: the tiles of a confusion-matrix cell, and the sprite that stands in for the data folder."""
import numpy as np
import pytest
from PIL import Image

from lungfake.data.splits import SplitRow, split_sha256
from lungfake.errors import SplitError
from lungfake.evaluation.misclassified import (
    SPRITE_TILE,
    TileSource,
    by_family,
    cell_rows,
    held_out_rows,
    misclassified_paths,
    write_sprite,
)
from lungfake.serving.store import WeightsStore
from tests.helpers import cells, metrics_of

CLASSES = ["lung_n", "lung_aca", "lung_scc"]


def _rows(n: int) -> list[SplitRow]:
    return [SplitRow(f"{CLASSES[i % 3]}/tile{i}.jpeg", CLASSES[i % 3], f"f{i}", "test") for i in range(n)]


def _metrics(predictions: list[int], n: int, **extra):
    return metrics_of(**{"true_labels": [i % 3 for i in range(n)], "predictions": predictions, **extra})


def test_a_cell_holds_exactly_its_tiles_and_errors_are_the_union_over_models():
    rows = _rows(6)  # true classes 0 1 2 0 1 2
    first = _metrics([0, 2, 2, 1, 1, 2], 6)  # tile1: aca called scc; tile3: benign called aca
    second = _metrics([0, 1, 1, 0, 1, 2], 6)  # tile2: scc called aca
    assert [r.path for r in cell_rows(first, rows, "lung_aca", "lung_scc")] == ["lung_aca/tile1.jpeg"]
    assert [r.path for r in cell_rows(first, rows, "lung_scc", "lung_scc")] == ["lung_scc/tile2.jpeg", "lung_scc/tile5.jpeg"]
    assert misclassified_paths([first, second], rows) == ["lung_aca/tile1.jpeg", "lung_scc/tile2.jpeg", "lung_n/tile3.jpeg"]


def test_a_cells_errors_are_counted_by_family_most_first():
    rows = [SplitRow(f"lung_scc/t{i}.jpeg", "lung_scc", "big" if i < 5 else "small", "test") for i in range(8)]
    wrong = _metrics([1, 1, 1, 2, 2, 1, 2, 2], 8, true_labels=[2] * 8)
    chosen = cell_rows(wrong, rows, "lung_scc", "lung_aca")
    assert by_family(chosen, rows) == [("big", 3, 5), ("small", 1, 3)]
    assert by_family([], rows) == []


def test_sprite_round_trips_tiles_and_stands_in_for_a_missing_data_folder(tmp_path):
    root, store = tmp_path / "data", WeightsStore(tmp_path / "weights")
    paths = [r.path for r in _rows(5)]
    for i, path in enumerate(paths):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cells(i, 224)).save(root / path, quality=95)
    write_sprite(root, paths[:3], store)
    from_sprite = TileSource(tmp_path / "absent", store)
    assert from_sprite.from_sprite and not TileSource(root, store).from_sprite
    tile = from_sprite.tile(paths[1])
    expected = np.asarray(Image.open(root / paths[1]).convert("RGB").resize((SPRITE_TILE, SPRITE_TILE), Image.Resampling.BILINEAR))
    assert tile.shape == (SPRITE_TILE, SPRITE_TILE, 3) and np.abs(tile.astype(int) - expected).mean() < 12
    assert from_sprite.tile(paths[4]) is None  # not misclassified, not shipped
    assert TileSource(root, store).tile(paths[4]).shape == (224, 224, 3)


def test_metrics_from_another_split_are_refused(tmp_path):
    store = WeightsStore(tmp_path)
    store.split_csv("grouped").parent.mkdir(parents=True)
    store.split_csv("grouped").write_text("path,label,family,side\nlung_n/a.jpeg,lung_n,f1,test\n")
    with pytest.raises(SplitError, match="another split"):
        held_out_rows(store, _metrics([0], 1, split_sha256="0" * 64))
    assert len(held_out_rows(store, _metrics([0], 1, split_sha256=split_sha256(store.split_csv("grouped"))))) == 1
